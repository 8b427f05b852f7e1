"""A robot's dialogue manager: subscribe to change events, comfort the person who turns sad.

    emotion-estimator serve --camera 0              # on the robot's computer
    python examples/robot_client.py ws://127.0.0.1:8765 [TOKEN]

Needs only ``websockets`` (``pip install websockets``); reconnects when the server restarts.
"""

from __future__ import annotations

import json
import sys
import time

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def on_event(event: dict) -> None:
    """Steer the conversation: here, print what the robot would do."""
    if event["to"] == "sad":
        print(f"face {event['face_id']} looks sad (p={event['probabilities']['sad']:.2f}): "
              "\"Is everything all right?\"")
    elif event["to"] == "happy":
        print(f"face {event['face_id']} smiles: carry on")


def main(url: str = "ws://127.0.0.1:8765", token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    while True:
        try:
            with connect(f"{url}/v1/stream?events_only=1", additional_headers=headers) as ws:
                for message in ws:
                    msg = json.loads(message)
                    if msg["type"] == "status":  # the server's camera failed or ended
                        print(f"source {msg['state']}: {msg.get('error', '')}", file=sys.stderr)
                    elif msg["type"] == "event":
                        on_event(msg)
        except InvalidStatus as exc:  # 403: wrong or missing token
            sys.exit(f"refused: {exc}")
        except (ConnectionClosed, OSError):
            time.sleep(2)  # server restarting or not up yet


if __name__ == "__main__":
    main(*sys.argv[1:3])
