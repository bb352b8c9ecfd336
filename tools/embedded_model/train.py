#!/usr/bin/env python3
"""Trains the small model that ships with Mamba.NET (models/mamba2-pystdlib): a Mamba-2 language model over the
source code of the CPython standard library (PSF license), with its own byte-level BPE tokenizer trained on the
same corpus in the GPT-NeoX style (the tokenizer family Mamba checkpoints use).

Needs torch, transformers, tokenizers and safetensors; a CUDA GPU makes it take minutes:
    python3 tools/embedded_model/train.py --out models/mamba2-pystdlib --seconds 150

Writes config.json + model.safetensors (Hugging Face layout, bf16 weights), tokenizer.json, reference.json
(greedy continuation of a fixed prompt computed in fp32 from the bf16 weights as saved), and training.json
(corpus, steps, losses, the command). With --tokenizer-cases it also writes the tokenizer test data: the same
tokenizer.json and cases.jsonl, one {"text", "ids"} per line encoded by the reference tokenizers library.
"""
import argparse
import glob
import json
import math
import os
import random
import sys
import sysconfig
import time

import torch
import transformers
import tokenizers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import Mamba2Config, Mamba2ForCausalLM

SPECIAL = ["<|endoftext|>", "<|padding|>"]
PROMPT = "def fibonacci(n):\n    "

HARD_STRINGS = [
    "", " ", "  ", "   leading spaces", "trailing spaces   ", "\t\ttabs\tinside", "\n", "\n\n\n", " \n \n",
    "Hello, world!", "It's they're we'll I'd you've", "don't STOP", "numbers 1234567890 3.14159 -42 1e-9",
    "def f(x):\n    return x ** 2  # square\n", "class A:\n\tpass\n", "    if a != b and c >= d:\n        yield",
    "import os, sys\nprint(os.path.join('a', \"b\"))", "x=[i for i in range(10)if i%2]",
    "naïve café résumé", "Ærøskøbing straße", "Привет, мир", "Γειά σου Κόσμε", "שלום עולם", "مرحبا بالعالم",
    "नमस्ते दुनिया", "こんにちは世界", "你好，世界", "안녕하세요", "ภาษาไทย", "e\u0301 combining acute",
    "emoji 😀😃😄 👍🏽", "family 👨‍👩‍👧‍👦 zwj", "flags 🇫🇷🇯🇵", "math ∑∫√∞ ≤ ≥", "zero\u200bwidth",
    "<|endoftext|>", "before<|endoftext|>after", "a <|padding|> b", "\u00a0non-breaking\u00a0space",
    "mixed\r\nline\rendings", "!!!???...,,,;;;", "\"quoted\" 'single' `back`", "CamelCaseWordsAndSNAKE_CASE",
    "https://example.com/path?q=1&r=2#frag", "€100 £50 ¥1000", "a" * 50, " " * 17 + "x",
]


def corpus_files():
    stdlib = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True))
    skip = ("/test/", "/tests/", "/idlelib/", "/lib2to3/", "site-packages", "/turtledemo/")
    return stdlib, [f for f in files if not any(s in f for s in skip)]


def read_corpus(files, limit_bytes):
    texts, total = [], 0
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        total += len(text.encode("utf-8"))
        if total >= limit_bytes:
            break
    return texts, total


def train_tokenizer(texts, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokenizer-cases", help="folder for tokenizer.json + cases.jsonl test data")
    parser.add_argument("--seconds", type=float, default=150.0, help="training time budget")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    os.makedirs(args.out, exist_ok=True)

    stdlib, files = corpus_files()
    texts, nbytes = read_corpus(files, 24 << 20)
    print(f"corpus: {len(texts)} files, {nbytes / 1e6:.1f} MB from {stdlib}", flush=True)
    tok = train_tokenizer(texts, args.vocab)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    pad = tok.token_to_id("<|padding|>")

    if args.tokenizer_cases:
        os.makedirs(args.tokenizer_cases, exist_ok=True)
        tok.save(os.path.join(args.tokenizer_cases, "tokenizer.json"))
        with open(os.path.join(args.tokenizer_cases, "cases.jsonl"), "w", encoding="utf-8") as f:
            for text in HARD_STRINGS:
                ids = tok.encode(text, add_special_tokens=False).ids
                f.write(json.dumps({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)},
                                   ensure_ascii=False) + "\n")
        print(f"tokenizer cases: {len(HARD_STRINGS)}", flush=True)

    random.shuffle(texts)
    nval = max(1, len(texts) // 50)
    def encode_all(chunk):
        ids = []
        for enc in tok.encode_batch(chunk):
            ids.extend(enc.ids)
            ids.append(eos)
        return torch.tensor(ids, dtype=torch.long)
    val_ids, train_ids = encode_all(texts[:nval]), encode_all(texts[nval:])
    print(f"tokens: train {train_ids.numel()}, val {val_ids.numel()}", flush=True)

    config = Mamba2Config(vocab_size=args.vocab, hidden_size=256, num_hidden_layers=6, state_size=64, expand=2,
                          num_heads=16, head_dim=32, n_groups=1, chunk_size=64, conv_kernel=4,
                          tie_word_embeddings=True, bos_token_id=eos, eos_token_id=eos, pad_token_id=pad,
                          use_cache=False)
    model = Mamba2ForCausalLM(config).to(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.2f} M parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    train_ids = train_ids.to(device)
    val_ids = val_ids.to(device)

    def batch(ids, n):
        starts = torch.randint(0, ids.numel() - args.seq - 1, (n,), device=device)
        offs = torch.arange(args.seq + 1, device=device)
        return ids[starts[:, None] + offs[None, :]]

    def evaluate():
        model.eval()
        g = torch.Generator(device=device).manual_seed(7)
        losses = []
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=use_autocast):
            for _ in range(8):
                starts = torch.randint(0, val_ids.numel() - args.seq - 1, (args.batch,), device=device, generator=g)
                b = val_ids[starts[:, None] + torch.arange(args.seq + 1, device=device)[None, :]]
                losses.append(model(input_ids=b, labels=b).loss.item())
        model.train()
        return sum(losses) / len(losses)

    use_autocast = device == "cuda"
    try:  # bf16 autocast where the mixer's plain-PyTorch path allows it, else fp32 (with TF32 matmuls)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=use_autocast):
            model(input_ids=batch(train_ids, 2), labels=batch(train_ids, 2)).loss.backward()
    except Exception as e:
        print(f"bf16 autocast failed ({type(e).__name__}: {e}); training in fp32", flush=True)
        use_autocast = False
        torch.backends.cuda.matmul.allow_tf32 = True
    opt.zero_grad(set_to_none=True)
    start, step, log = time.time(), 0, []
    warmup = 100
    model.train()
    while time.time() - start < args.seconds:
        elapsed = (time.time() - start) / args.seconds
        lr = 3e-3 * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed))))
        for group in opt.param_groups:
            group["lr"] = lr
        b = batch(train_ids, args.batch)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=use_autocast):
            loss = model(input_ids=b, labels=b).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0:
            log.append({"step": step, "seconds": round(time.time() - start, 1), "loss": round(loss.item(), 4)})
            print(log[-1], flush=True)
        step += 1
    val_loss = evaluate()
    print(f"trained {step} steps, final train loss {loss.item():.4f}, val loss {val_loss:.4f}", flush=True)

    # Ship bf16 weights; the reference continuation is computed in fp32 from exactly those weights.
    model = model.to("cpu").to(torch.bfloat16).to(torch.float32).eval()
    model.config.torch_dtype = "bfloat16"
    model.to(torch.bfloat16).save_pretrained(args.out, safe_serialization=True)
    model = model.to(torch.float32)
    prompt_ids = tok.encode(PROMPT, add_special_tokens=False).ids
    cur = torch.tensor([prompt_ids])
    greedy = []
    with torch.no_grad():
        for _ in range(48):
            nxt = model(input_ids=cur, use_cache=False).logits[0, -1].argmax().item()
            greedy.append(nxt)
            cur = torch.cat([cur, torch.tensor([[nxt]])], dim=1)
    reference = {"prompt": PROMPT, "prompt_ids": prompt_ids, "greedy_ids": greedy,
                 "greedy_text": tok.decode(greedy), "dtype_of_math": "float32", "weights": "bfloat16"}
    with open(os.path.join(args.out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(reference, f, indent=1, ensure_ascii=False)
    training = {"corpus": f"CPython {sys.version.split()[0]} standard library sources (PSF license), "
                          f"{len(texts)} files, {nbytes} bytes; test/, tests/, idlelib/, lib2to3/ and turtledemo/ excluded",
                "tokenizer": f"byte-level BPE, vocab {args.vocab}, GPT-NeoX pre-tokenizer settings, NFC",
                "parameters": params, "steps": step, "batch": args.batch, "sequence": args.seq,
                "seconds": args.seconds, "final_train_loss": round(loss.item(), 4), "val_loss": round(val_loss, 4),
                "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                "torch": torch.__version__, "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__, "log": log,
                "command": "python3 " + " ".join(sys.argv)}
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(training, f, indent=1)
    print(json.dumps(reference, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
