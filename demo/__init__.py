"""The Gradio live demo: a thin client of the realtime websocket server."""
