"""The fusion classifier (aligned face crop + landmarks + blendshapes, one ONNX graph):
``model`` (the network and what the graph computes), ``data`` (a prepared dataset -> arrays
and targets), ``augment`` (batched augmentation), ``train`` (one run), ``ensemble`` (runs of
several seeds averaged into one graph), ``export`` (ONNX + metadata)."""
