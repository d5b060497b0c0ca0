"""The server the HTTP benchmark talks to: deltahub's app, plus the same directory served as static files.

    python -m bench.transfer_server --data-dir DIR --static-dir DIR --port N --token T

Static files from the same process and event loop are the reference a pull is compared against.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from fastapi.staticfiles import StaticFiles

from service.app import create_app
from service.auth import StaticTokenStore, TokenInfo
from storage.settings import load_settings
from workers.runtime import open_hub


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--static-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    settings = load_settings(data_dir=args.data_dir)
    hub = open_hub(settings)
    app = create_app(hub, settings, StaticTokenStore({args.token: TokenInfo("bench", True)}))
    app.mount("/static", StaticFiles(directory=args.static_dir), name="static")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
