"""Drives our server with the official `openai` SDK, unchanged.

Usage: python openai_client.py '<json plan>'
The plan: {"base_url": ..., "api_key": ..., "calls": [{"messages": [...], "stream": bool,
"session_id": str|null, "max_tokens": int, "stop": [..]|null}]}. Prints one JSON object:
{"models": [ids], "results": [{"content", "finish_reason", "usage", "chunks"}]}.
"""
import json
import sys

import openai

plan = json.loads(sys.argv[1])
client = openai.OpenAI(base_url=plan["base_url"], api_key=plan.get("api_key", "unused"), max_retries=0, timeout=120)

out = {"models": [m.id for m in client.models.list().data], "results": []}
for call in plan["calls"]:
    headers = {"X-Session-Id": call["session_id"]} if call.get("session_id") else None
    kwargs = dict(model=plan["model"], messages=call["messages"], temperature=0, max_tokens=call.get("max_tokens", 48), seed=1, extra_headers=headers)
    if call.get("stop"):
        kwargs["stop"] = call["stop"]
    if call.get("stream"):
        stream = client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
        content, finish, usage, chunks = "", None, None, 0
        for chunk in stream:
            chunks += 1
            assert chunk.object == "chat.completion.chunk", chunk
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                content += choice.delta.content or ""
                finish = choice.finish_reason or finish
        out["results"].append({"content": content, "finish_reason": finish, "usage": usage, "chunks": chunks})
    else:
        response = client.chat.completions.create(**kwargs)
        choice = response.choices[0]
        out["results"].append({"content": choice.message.content, "finish_reason": choice.finish_reason, "usage": response.usage.model_dump(), "chunks": 0})

# An error must come back in OpenAI's shape, which the SDK turns into its exception type.
try:
    client.chat.completions.create(model=plan["model"], messages=[])
    out["error_check"] = "no error"
except openai.BadRequestError as e:
    out["error_check"] = e.body.get("param") if isinstance(e.body, dict) else str(e.body)
print(json.dumps(out))
