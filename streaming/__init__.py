"""Real-time serving: wire protocol, turn-taking, batched engine, websocket server, client.

Layout:
  protocol/   OpenAI-Realtime-compatible events, session config, pcm16 + resampling (no torch)
  vad.py      silero-vad batched over sessions + the two-threshold endpointer
  frames.py   video frame sampling (dense while the user speaks, sparse while answering)
  engine.py   the worker thread that owns the model and batches prefill/decode; the commands
              sessions send it and the events it sends back in engine_commands.py, a slot's
              record and state in engine_state.py; its worker stages encode_stage.py, audio_stage.py
  session.py  per-connection state machine (listen, speculate, respond, interrupted); its parts:
              responses.py (replies), calls.py (function calling), transcripts.py (input
              transcripts), conversation.py (the items, for retrieve / delete)
  timing.py   per-stage queue / compute timings and a reply's first-audio critical path
  transcribe_stage.py  the input recognizer, in a process of its own
  server.py   websockets transport, security, admission control, /metrics
  client.py   asyncio reference client (used by `omni client`, the demo and the benchmark)
"""
