"""Provider simulator: a fast, standalone fake of LLM providers.

Run it with ``python -m routing.simulator --host 127.0.0.1 --port 8090 [--config path.json]``.
Every provider slug is served at ``http://HOST:PORT/p/<slug>/v1`` in three dialects: OpenAI chat
(``/chat/completions``, ``/completions``), Anthropic Messages (``/messages``) and Google Gemini
(``/models/<model>:generateContent``, ``:streamGenerateContent``); behaviour (latency, speed,
failures) is set per provider from the config file and changed at run time through the
``/_control`` API. This package must not import Django so that it starts quickly.
"""
