"""The web layer: REST API, websocket feed and browser UI."""
