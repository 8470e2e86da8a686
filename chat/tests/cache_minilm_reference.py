"""Independent numpy reference of all-MiniLM-L6-v2 sentence embeddings (BERT forward, mean
pooling over the attention mask, L2 normalisation), written from the BERT paper and the
safetensors layout, not from candle. Regenerates cache_minilm_golden.json:

    python cache_minilm_reference.py $MOORING_TEST_MINILM_DIR "What is AI?" ... > cache_minilm_golden.json

Needs numpy and scipy (the test venv has both)."""
import json, struct, sys, unicodedata
import numpy as np
from scipy.special import erf

d = sys.argv[1]
raw = open(f"{d}/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
base = 8 + n
W = {}
for k, v in header.items():
    if k == "__metadata__":
        continue
    a, b = v["data_offsets"]
    dt = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
    W[k] = np.frombuffer(raw[base + a:base + b], dtype=dt).reshape(v["shape"])
cfg = json.load(open(f"{d}/config.json"))
vocab = {w.rstrip("\n"): i for i, w in enumerate(open(f"{d}/vocab.txt", encoding="utf-8"))}

def tokenize(text):
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    words, cur = [], ""
    for c in text:
        if c.isspace():
            if cur: words.append(cur); cur = ""
        elif unicodedata.category(c).startswith("P") or c in "$+<=>^`|~":
            if cur: words.append(cur); cur = ""
            words.append(c)
        else:
            cur += c
    if cur: words.append(cur)
    ids = [vocab["[CLS]"]]
    for w in words:
        start, pieces = 0, []
        while start < len(w):
            end = len(w)
            while end > start:
                piece = w[start:end] if start == 0 else "##" + w[start:end]
                if piece in vocab: break
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]; break
            pieces.append(vocab[piece]); start = end
        ids += pieces
    return ids + [vocab["[SEP]"]]

def ln(x, p):
    m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + cfg["layer_norm_eps"]) * W[p + ".weight"] + W[p + ".bias"]

def lin(x, p):
    return x @ W[p + ".weight"].T + W[p + ".bias"]

def embed(text):
    ids = tokenize(text)
    x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:len(ids)] + W["embeddings.token_type_embeddings.weight"][0]
    x = ln(x.astype(np.float64), "embeddings.LayerNorm")
    h = cfg["num_attention_heads"]; hd = cfg["hidden_size"] // h
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        q, k, v = (lin(x, p + f"attention.self.{n}").reshape(len(ids), h, hd).transpose(1, 0, 2) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(len(ids), -1)
        x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        i = lin(x, p + "intermediate.dense"); i = 0.5 * i * (1 + erf(i / np.sqrt(2)))
        x = ln(x + lin(i, p + "output.dense"), p + "output.LayerNorm")
    m = x.mean(0)  # one sentence, no padding: the mask keeps every token
    return ids, m / np.linalg.norm(m)

out = []
for text in sys.argv[2:]:
    ids, e = embed(text)
    out.append({"text": text, "ids": ids, "embedding": [round(float(v), 6) for v in e]})
print(json.dumps(out))
