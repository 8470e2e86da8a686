"""Measures llama-server the way chat/examples/local_speed.rs measures the local backend:
the same prompts, greedy, the same `key value` lines. Standard library only.

    python3 llama_server.py URL RUNS MAX_TOKENS
"""
import json
import os
import statistics
import sys
import threading
import time
import urllib.request

# Between a session's answer and its next question, as in local_speed.rs.
PAUSE_MS = int(os.environ.get("PAUSE_MS", "500"))
OPENINGS = ["Please", "Kindly", "Now", "Today", "Quickly", "Carefully", "Simply", "Again"]


def story(opening):
    return [
        {"role": "system", "content": f"{opening} be a helpful assistant."},
        {"role": "user", "content": "Write a short story about a lighthouse keeper."},
    ]


def run(url, messages, max_tokens):
    """Streams one answer: (ttft s, decode tok/s after the first, tokens, answer)."""
    body = json.dumps({
        "messages": messages, "max_tokens": max_tokens, "temperature": 0, "seed": 1,
        "repeat_penalty": 1.0, "stream": True, "stream_options": {"include_usage": True},
    }).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", body,
                                     {"Content-Type": "application/json"})
    started = time.perf_counter()
    first = None
    answer = []
    tokens = 0
    with urllib.request.urlopen(request) as response:
        for line in response:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                text = choice.get("delta", {}).get("content")
                if text:
                    first = first or time.perf_counter()
                    answer.append(text)
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    end = time.perf_counter()
    first = first or end
    return first - started, max(tokens - 1, 0) / (end - first), tokens, "".join(answer)


def main():
    url, runs, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    run(url, story("Warm"), 8)
    cold = [run(url, story(OPENINGS[i % 8]), max_tokens) for i in range(runs)]
    print(f"cold_ttft_ms {statistics.median(c[0] for c in cold) * 1000:.1f}")
    print(f"decode_tps {statistics.median(c[1] for c in cold):.1f}")
    turn2, cold2 = [], []
    for i in range(runs):
        messages = story(OPENINGS[(i + 3) % 8])
        first = run(url, messages, 48)
        messages += [{"role": "assistant", "content": first[3]},
                     {"role": "user", "content": "Give it a title."}]
        time.sleep(PAUSE_MS / 1000)
        turn2.append(run(url, messages, 16)[0])
        messages[0] = {"role": "system", "content": f"Cold{i} be a helpful assistant."}
        time.sleep(PAUSE_MS / 1000)
        cold2.append(run(url, messages, 16)[0])
    print(f"turn2_ttft_ms {statistics.median(turn2) * 1000:.1f}")
    print(f"turn2_cold_ttft_ms {statistics.median(cold2) * 1000:.1f}")
    for streams in (1, 4):
        results = [None] * streams

        def one(i):
            results[i] = run(url, story(f"S{streams}x{i}:"), max_tokens)

        started = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(r[2] for r in results)
        print(f"aggregate_tps_{streams} {total / (time.perf_counter() - started):.1f}")


if __name__ == "__main__":
    main()
