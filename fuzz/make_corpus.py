"""Seed corpora and fixtures for the libFuzzer harnesses in fuzz/ (docs/fuzzing.md).

    .venv/bin/python fuzz/make_corpus.py        # rewrites fuzz/corpus/ and fuzz/fixtures/

Every seed is a small valid input (or a deliberate near miss) of its harness's format:
  corpus/onnx/              models of different ops: conv nets, matmul chains, shape arithmetic
                            over constants, typed-field and external-data initializers (beside
                            fixtures/onnx/weights.bin), If/Loop subgraphs, a custom-domain node
  corpus/safetensors/       every dtype, metadata, empty and scalar tensors, a torchvision-named
                            ResNet state_dict (built into a graph by name)
  corpus/safetensors_index/ index JSONs over fixtures/shards/
  corpus/hf_config/         config.json of each architecture ulc builds (gpt2, vit, clip, resnet),
                            matching the tiny weights in fixtures/hf/<type>/
  corpus/peft_config/       adapter_config.json variants over fixtures/peft/
  corpus/spec/              forget specs covering every method and key (docs/spec.md)
  corpus/data/              data files for the two models in fixtures/data/
  corpus/text_data/         JSONL and .txt data files (first byte: format and overflow), some
                            with a forget file after a line "--forget--"; the tokenizer in
                            fixtures/data/tokenizer/ is the tiny GPT2's (tests/fixtures/gen_hf.py)
Output is deterministic (fixed seeds, sorted JSON keys), so regenerating changes nothing unless
this script changes. Regression seeds (corpus/*/regress-*) are findings' inputs: kept by hand,
never rewritten here.
"""
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"
FIXTURES = ROOT / "fixtures"


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def clean(folder):
    """Removes the generated files of a folder (regression seeds stay)."""
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_file() and not p.name.startswith("regress-"):
                p.unlink()


# ---- safetensors -------------------------------------------------------------------------------

ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
             "I8": "i1", "U8": "u1", "BOOL": "?", "U16": "<u2", "U32": "<u4", "U64": "<u8"}


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype name, shape, raw bytes)] -> the file's bytes (8-byte padded)."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def arr(dt, shape, seed=0):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape)) if shape else 1
    np_dt = ST_DTYPES[dt]
    if dt == "BOOL":
        a = rng.integers(0, 2, n).astype(np_dt)
    elif np.dtype(np_dt).kind in "iu":
        a = rng.integers(0, 7, n).astype(np_dt)
    else:
        a = rng.standard_normal(n).astype(np_dt)
    return (dt, list(shape), a.tobytes())


def bf16(shape, seed=0):
    a = np.random.default_rng(seed).standard_normal(int(np.prod(shape))).astype("<f4")
    return ("BF16", list(shape), (a.view("<u4") >> 16).astype("<u2").tobytes())


def st_from(named):
    return safetensors([(n, *t) for n, t in named])


def torchvision_resnet_tiny():
    """torchvision ResNet names (BasicBlock, one block per stage) with tiny widths."""
    ts, seed = [], [0]

    def add(name, shape):
        seed[0] += 1
        ts.append((name, arr("F32", shape, seed[0])))

    def bn(prefix, c):
        for k in ("weight", "bias", "running_mean"):
            add(f"{prefix}.{k}", [c])
        ts.append((f"{prefix}.running_var", ("F32", [c], np.full(c, 1.5, "<f4").tobytes())))
        ts.append((f"{prefix}.num_batches_tracked", ("I64", [], np.int64(3).tobytes())))

    add("conv1.weight", [4, 3, 7, 7])
    bn("bn1", 4)
    cin = 4
    for layer, c in enumerate([4, 8, 8, 8], 1):
        p = f"layer{layer}.0"
        add(f"{p}.conv1.weight", [c, cin, 3, 3])
        bn(f"{p}.bn1", c)
        add(f"{p}.conv2.weight", [c, c, 3, 3])
        bn(f"{p}.bn2", c)
        if layer > 1:
            add(f"{p}.downsample.0.weight", [c, cin, 1, 1])
            bn(f"{p}.downsample.1", c)
        cin = c
    add("fc.weight", [3, cin])
    add("fc.bias", [3])
    return st_from(ts)


def corpus_safetensors():
    out = CORPUS / "safetensors"
    clean(out)
    for i, dt in enumerate(ST_DTYPES):
        write(out / f"dtype-{dt.lower()}.safetensors", st_from([("t", arr(dt, [2, 3], i))]))
    write(out / "dtype-bf16.safetensors", st_from([("t", bf16([3, 2]))]))
    write(out / "metadata.safetensors",
          safetensors([("w", *arr("F32", [4, 2], 1)), ("b", *arr("F16", [4], 2))],
                      {"format": "pt", "ulc_history": "[]"}))
    write(out / "empty-and-scalar.safetensors",
          st_from([("empty", arr("F32", [0, 3])), ("scalar", arr("I64", [])),
                   ("mask", arr("BOOL", [5], 3))]))
    write(out / "no-tensors.safetensors", safetensors([], {"k": "v"}))
    write(out / "mixed.safetensors",
          st_from([("a.weight", arr("F32", [3, 4], 4)), ("a.bias", arr("F32", [3], 5)),
                   ("ids", arr("I64", [2, 2], 6)), ("h", bf16([2, 2], 7)),
                   ("q", arr("U8", [8], 8))]))
    write(out / "torchvision-resnet.safetensors", torchvision_resnet_tiny())


# ---- sharded checkpoints -----------------------------------------------------------------------

SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"


def fixtures_shards():
    write(FIXTURES / "shards" / SHARD1,
          st_from([("a.weight", arr("F32", [2, 3], 1)), ("a.bias", arr("F32", [2], 2))]))
    write(FIXTURES / "shards" / SHARD2, safetensors([("b.weight", *arr("F16", [3, 2], 3))],
                                                    {"format": "pt"}))


def jdump(obj):
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def corpus_index():
    out = CORPUS / "safetensors_index"
    clean(out)
    full = {"a.weight": SHARD1, "a.bias": SHARD1, "b.weight": SHARD2}
    write(out / "full.json", jdump({"metadata": {"total_size": 44}, "weight_map": full}))
    write(out / "no-metadata.json", jdump({"weight_map": full}))
    write(out / "one-shard.json", jdump({"metadata": {}, "weight_map": {"b.weight": SHARD2}}))
    write(out / "missing-tensor.json", jdump({"weight_map": {"a.weight": SHARD1}}))
    write(out / "unknown-shard.json", jdump({"weight_map": {"c": "model-00003-of-00003.safetensors"}}))


# ---- Hugging Face configs and their tiny weights -----------------------------------------------

def hf_models():
    """(architecture, a function making its tiny model): made after seeding, so the weights are
    the same on every run."""
    from transformers import (CLIPConfig, CLIPModel, GPT2Config, GPT2LMHeadModel, ResNetConfig,
                              ResNetForImageClassification, ViTConfig, ViTForImageClassification)
    yield "gpt2", lambda: GPT2LMHeadModel(GPT2Config(vocab_size=24, n_positions=8, n_embd=8,
                                                     n_layer=1, n_head=2))
    yield "vit", lambda: ViTForImageClassification(ViTConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        image_size=8, patch_size=4, num_channels=3, num_labels=3))
    yield "clip", lambda: CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=24, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=8, eos_token_id=23),
        vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                           num_attention_heads=2, image_size=8, patch_size=4),
        projection_dim=4))
    yield "resnet", lambda: ResNetForImageClassification(ResNetConfig(
        embedding_size=4, hidden_sizes=[4, 8], depths=[1, 1], layer_type="basic", num_labels=3))


def hf_fixtures_and_configs():
    import tempfile

    import torch
    out = CORPUS / "hf_config"
    clean(out)
    for name, make in hf_models():
        torch.manual_seed(0)
        model = make()
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            write(FIXTURES / "hf" / name / "model.safetensors",
                  (Path(tmp) / "model.safetensors").read_bytes())
            cfg = json.loads((Path(tmp) / "config.json").read_text())
        cfg.pop("transformers_version", None)
        write(out / f"{name}.json", jdump(cfg))
        # the same weights under the bare model's class, and with a few sizes changed
        write(out / f"{name}-base-arch.json",
              jdump({**cfg, "architectures": [cfg["architectures"][0].replace(
                  "LMHead", "").replace("ForImageClassification", "")]}))
    write(out / "unknown-type.json", jdump({"model_type": "llama", "hidden_size": 8}))
    write(out / "no-type.json", jdump({"architectures": ["ResNetModel"]}))


# ---- PEFT adapters -----------------------------------------------------------------------------

def fixtures_peft():
    p = "base_model.model."
    write(FIXTURES / "peft" / "adapter_model.safetensors", st_from([
        (p + "fc.lora_A.weight", arr("F32", [2, 6], 1)),
        (p + "fc.lora_B.weight", arr("F32", [4, 2], 2)),
        (p + "layer1.0.conv1.lora_A.weight", arr("F32", [2, 3, 3, 3], 3)),
        (p + "layer1.0.conv1.lora_B.weight", arr("F32", [4, 2, 1, 1], 4))]))


def corpus_peft():
    out = CORPUS / "peft_config"
    clean(out)
    base = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["fc", "conv1"],
            "bias": "none", "fan_in_fan_out": False, "use_rslora": False,
            "base_model_name_or_path": "resnet18", "task_type": None, "lora_dropout": 0.0}
    write(out / "basic.json", jdump(base))
    write(out / "patterns.json", jdump({**base, "rank_pattern": {"fc": 2, "layer1.*": 1},
                                        "alpha_pattern": {"fc": 8.5}, "use_rslora": True}))
    write(out / "string-targets.json", jdump({**base, "target_modules": "fc|conv1",
                                              "fan_in_fan_out": True, "bias": "lora_only"}))
    write(out / "minimal.json", jdump({"r": 2}))
    write(out / "dora.json", jdump({**base, "use_dora": True}))
    write(out / "other-type.json", jdump({**base, "peft_type": "IA3"}))


# ---- forget specs ------------------------------------------------------------------------------

def corpus_spec():
    out = CORPUS / "spec"
    clean(out)
    data = {"train": "train.safetensors", "test": "test.safetensors"}
    full_train = {"epochs": 2, "batch_size": 16, "lr": 0.005, "optimizer": "adamw",
                  "weight_decay": 0.01, "seed": 7}
    specs = {
        "rfa-full": {"method": "rfa", "data": data, "forget": {"classes": [3, 5]},
                     "model": {"input": "input", "output": "logits"},
                     "lora": {"rank": 4, "alpha": 16, "targets": ["Conv", "Gemm", "MatMul"],
                              "include": ["layer4.*"], "exclude": ["layer4.0.downsample.*"]},
                     "train": full_train, "rfa": {"gamma": 0.5, "norm": "l1"},
                     "gates": {"forget_acc_max": 0.1, "retain_acc_drop_max": 0.02, "mia_max": 0.6},
                     "eval": {"features": False, "relearn_steps": 5, "relearn_lr": 0.01,
                              "reference": "reference.onnx"},
                     "report": "reports/out.html"},
        "text": {"method": "rfa", "data": {"train": "train.jsonl"},
                 "forget": {"file": "forget.txt"},
                 "model": {"max_length": 64, "overflow": "windows", "stride": 8,
                           "tokenizer": "tok"}},
        "text-indices": {"method": "rfa", "data": {"train": "train.jsonl"},
                         "forget": {"indices": [0]},
                         "model": {"max_length": 8, "tokenizer": "tok/tokenizer.json",
                                   "overflow": "truncate"}},
        "text-keys-without-text": {"method": "rfa", "data": data, "forget": {"classes": [3]},
                                   "model": {"max_length": 8}},
        "rfa-minimal": {"method": "rfa", "data": {"train": "train.safetensors"},
                        "forget": {"indices": [17, 2, 33]}},
        "rfa-indices-file": {"method": "rfa", "data": data,
                             "forget": {"indices_file": "indices.json"},
                             "eval": {"reference": "hf"}, "report": "r.md"},
        "bad-indices-file": {"method": "rfa", "data": data, "forget": {"indices_file": "bad.json"}},
        "delete": {"method": "delete", "data": data, "forget": {"classes": [1]},
                   "delete": {"mask": "all_forget", "temperature": 2.0, "train": "all"},
                   "train": {"optimizer": "sgd", "momentum": 0.9, "lr": 0.01}},
        "finetune": {"method": "finetune", "data": data, "forget": {"indices": [0, 1]},
                     "finetune": {"train": "all_but_classifier"}, "train": {"epochs": 1}},
        "neggrad": {"method": "neggrad", "data": data, "forget": {"classes": [0]},
                    "neggrad": {"train": "lora"}, "lora": {"rank": 2}},
        "random-label": {"method": "random-label", "data": data, "forget": {"classes": [2]},
                         "random-label": {"train": "all"}},
        "scrub": {"method": "scrub", "data": data, "forget": {"classes": [4]},
                  "scrub": {"alpha": 0.5, "gamma": 1.0, "train": "all"},
                  "train": {"optimizer": "sgd", "weight_decay": 0.0005}},
        "retrain": {"method": "retrain", "data": data, "forget": {"indices": [5]},
                    "retrain": {"train": "all"}, "train": {"epochs": 3, "seed": 1}},
        "relearn-gate": {"method": "rfa", "data": data, "forget": {"classes": [3]},
                         "gates": {"relearn_steps_min": 3, "forget_ppl_min": 2.5,
                                   "extract_max": 0.2},
                         "eval": {"relearn_steps": 5, "reference": "reference.onnx"}},
        "relearn-gate-unmeasurable": {"method": "rfa", "data": data, "forget": {"classes": [3]},
                                      "gates": {"relearn_steps_min": 11}},
        "norms": {"method": "rfa", "data": data, "forget": {"classes": [3]},
                  "rfa": {"norm": "mse", "gamma": 1}},
        "unknown-key": {"method": "rfa", "data": data, "forget": {"classes": [3]},
                        "lora": {"rnak": 8}},
        "clip-nhl-kl": {"method": "nhl-kl", "data": data,
                        "clip": {"classes": ["zero", "one", "two"],
                                 "templates": ["a photo of the digit {}.", "the number {}"],
                                 "coarse": {"zero": "even", "one": "odd", "two": "even"},
                                 "coarse_templates": ["an {} digit"], "tower": "both",
                                 "captions": "forget.txt",
                                 "heldout": {"data": "test.safetensors", "classes": ["a", "b"]}},
                        "forget": {"concepts": ["one"]}, "model": {"tokenizer": "tok"},
                        "nhl-kl": {"margin": 2, "alpha_coarse": 10, "alpha_fine": 20,
                                   "train": "lora"}},
        "clip-graddiff-kl": {"method": "graddiff", "data": data,
                             "clip": {"classes": ["cat", "dog"], "templates": ["a {}"]},
                             "forget": {"concepts": ["dog"]},
                             "graddiff": {"retain": "kl", "train": "lora"}},
        "megu": {"method": "megu", "data": data, "forget": {"classes": [1]},
                 "megu": {"train": "all", "tau": 0.3, "alpha": 0.7, "noise_steps": 25,
                          "noise_lr": 0.1, "noise_lambda": 0.1, "retain_rows": 10000,
                          "similarity": "similarity.json"},
                 "train": {"lr": 0.0003, "epochs": 3, "batch_size": 32}},
        "megu-bad-similarity": {"method": "megu", "data": data, "forget": {"indices": [0]},
                                "megu": {"similarity": "bad.json"}},
        "robust": {"method": "rfa", "data": data, "forget": {"classes": [3]},
                   "robust": {"alpha": 0.25, "epochs": 5, "batch_size": 64, "lr": 0.003,
                              "weight_decay": 0.0001, "optimizer": "adamw", "temperature": 2}},
    }
    for name, spec in specs.items():
        write(out / f"{name}.json", jdump(spec))
    write(out / "not-json.json", '{"method": "rfa", "data": {"train": "train.safetensors"},\n')


# ---- ONNX models -------------------------------------------------------------------------------

def init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def rnd(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def model(nodes, inputs, outputs, inits=(), opset=17, value_info=(), name="g", **kw):
    g = helper.make_graph(nodes, name, inputs, outputs, list(inits), value_info=list(value_info))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="ulc-fuzz",
                          **kw)
    m.ir_version = 8
    return m.SerializeToString()


def vi(name, dt, shape):
    return helper.make_tensor_value_info(name, dt, shape)


F = TensorProto.FLOAT
I64 = TensorProto.INT64


def onnx_models():
    n = helper.make_node
    yield "conv-net", model(
        [n("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1], kernel_shape=[3, 3]),
         n("BatchNormalization", ["c", "s", "bb", "mu", "var"], ["bn"], epsilon=1e-5),
         n("Relu", ["bn"], ["r"]), n("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         n("GlobalAveragePool", ["p"], ["gap"]), n("Flatten", ["gap"], ["f"], axis=1),
         n("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
        [vi("x", F, ["N", 1, 8, 8])], [vi("y", F, ["N", 3])],
        [init("w", rnd([4, 1, 3, 3], 1)), init("b", rnd([4], 2)), init("s", rnd([4], 3)),
         init("bb", rnd([4], 4)), init("mu", rnd([4], 5)), init("var", np.ones(4, np.float32)),
         init("fw", rnd([3, 4], 6)), init("fb", rnd([3], 7))])
    yield "matmul-softmax", model(
        [n("MatMul", ["x", "w"], ["m"]), n("Add", ["m", "b"], ["a"]), n("Tanh", ["a"], ["t"]),
         n("Softmax", ["t"], ["y"], axis=-1)],
        [vi("x", F, [2, 4])], [vi("y", F, [2, 3])],
        [init("w", rnd([4, 3], 1)), init("b", rnd([3], 2))])
    # shape arithmetic over constants: what the analysis folds
    yield "shape-ops", model(
        [n("Shape", ["x"], ["s"]), n("Constant", [], ["idx"], value=init("idx", np.array([0], np.int64))),
         n("Gather", ["s", "idx"], ["n0"], axis=0),
         n("Constant", [], ["rest"], value=init("rest", np.array([-1], np.int64))),
         n("Concat", ["n0", "rest"], ["shp"], axis=0), n("Reshape", ["x", "shp"], ["r"]),
         n("Transpose", ["r"], ["t"], perm=[1, 0]), n("ReduceSum", ["t", "axes"], ["y"], keepdims=0),
         n("Unsqueeze", ["y", "axes"], ["u"]), n("Cast", ["u"], ["z"], to=TensorProto.DOUBLE)],
        [vi("x", F, ["N", 2, 3])], [vi("z", TensorProto.DOUBLE, None)],
        [init("axes", np.array([0], np.int64))])
    # typed fields (float_data, int64_data) instead of raw_data, and a string tensor
    typed = helper.make_tensor("w", F, [2, 2], [1.0, 2.0, 3.0, 4.0])
    strs = helper.make_tensor("names", TensorProto.STRING, [2], [b"a", b"b"])
    shp = helper.make_tensor("shp", I64, [2], [4, 1])
    yield "typed-fields", model(
        [n("MatMul", ["x", "w"], ["m"]), n("Reshape", ["m", "shp"], ["y"])],
        [vi("x", F, [2, 2])], [vi("y", F, [4, 1])], [typed, strs, shp])
    # initializers in weights.bin beside the model (the fixture: 64 float32)
    def external(name, dims, offset, length):
        t = TensorProto(name=name, data_type=F, dims=dims, data_location=TensorProto.EXTERNAL)
        for k, v in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(length))):
            t.external_data.add(key=k, value=v)
        return t
    ext, ext2 = external("w", [4, 4], 0, 64), external("b", [4], 128, 16)
    yield "external-data", model(
        [n("Gemm", ["x", "w", "b"], ["y"])], [vi("x", F, [1, 4])], [vi("y", F, [1, 4])], [ext, ext2])
    # If with two subgraphs, and a Loop
    then_g = helper.make_graph([n("Relu", ["x"], ["t"])], "then", [], [vi("t", F, [2])])
    else_g = helper.make_graph([n("Neg", ["x"], ["e"])], "else", [], [vi("e", F, [2])])
    body = helper.make_graph(
        [n("Add", ["acc", "x"], ["acc2"]), n("Identity", ["cond"], ["cond2"])], "body",
        [vi("i", I64, []), vi("cond", TensorProto.BOOL, []), vi("acc", F, [2])],
        [vi("cond2", TensorProto.BOOL, []), vi("acc2", F, [2])])
    yield "subgraphs", model(
        [n("ReduceSum", ["x"], ["s"], keepdims=0), n("Greater", ["s", "zero"], ["c"]),
         n("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g),
         n("Loop", ["trip", "", "y"], ["z"], body=body)],
        [vi("x", F, [2])], [vi("z", F, [2])],
        [init("zero", np.float32(0)), init("trip", np.int64(3))], opset=13)
    # a transformer-ish block: LayerNormalization, Gelu by Erf, Split, Where
    yield "layernorm-gelu", model(
        [n("LayerNormalization", ["x", "g", "b"], ["ln"], axis=-1, epsilon=1e-5),
         n("Div", ["ln", "sqrt2"], ["d"]), n("Erf", ["d"], ["e"]), n("Add", ["e", "one"], ["e1"]),
         n("Mul", ["ln", "e1"], ["m"]), n("Mul", ["m", "half"], ["gelu"]),
         n("Split", ["gelu", "split"], ["a", "c"], axis=-1), n("Greater", ["a", "c"], ["gt"]),
         n("Where", ["gt", "a", "c"], ["y"])],
        [vi("x", F, ["B", "T", 4])], [vi("y", F, ["B", "T", 2])],
        [init("g", np.ones(4, np.float32)), init("b", np.zeros(4, np.float32)),
         init("sqrt2", np.float32(1.4142135)), init("one", np.float32(1)),
         init("half", np.float32(0.5)), init("split", np.array([2, 2], np.int64))])
    # embedding + attention-style MatMul chain on int64 ids
    yield "embedding", model(
        [n("Gather", ["emb", "ids"], ["h"], axis=0), n("Transpose", ["h"], ["ht"], perm=[0, 2, 1]),
         n("MatMul", ["h", "ht"], ["att"]), n("Softmax", ["att"], ["p"], axis=-1),
         n("MatMul", ["p", "h"], ["y"])],
        [vi("ids", I64, ["B", "T"])], [vi("y", F, ["B", "T", 4])], [init("emb", rnd([16, 4], 9))])
    # a node of another domain: kept and written back, refused by the CPU backend
    m = helper.make_model(helper.make_graph(
        [n("MyOp", ["x"], ["y"], domain="com.example", alpha=0.5, names=["a", "b"])], "custom",
        [vi("x", F, [3])], [vi("y", F, [3])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    m.ir_version = 8
    m.metadata_props.add(key="ulc_history", value="[]")
    yield "custom-domain", m.SerializeToString()
    # ConstantOfShape / Range / Expand / Slice / Pad with constant inputs
    yield "constant-ops", model(
        [n("ConstantOfShape", ["shape"], ["c"], value=init("v", np.array([2.0], np.float32))),
         n("Range", ["start", "limit", "delta"], ["r"]), n("Cast", ["r"], ["rf"], to=F),
         n("Expand", ["rf", "shape"], ["e"]), n("Add", ["c", "e"], ["s"]),
         n("Slice", ["s", "st", "en", "ax"], ["sl"]), n("Pad", ["sl", "pads"], ["y"], mode="constant")],
        [], [vi("y", F, None)],
        [init("shape", np.array([2, 3], np.int64)), init("start", np.int64(0)),
         init("limit", np.int64(3)), init("delta", np.int64(1)), init("st", np.array([0], np.int64)),
         init("en", np.array([2], np.int64)), init("ax", np.array([1], np.int64)),
         init("pads", np.array([0, 1, 0, 1], np.int64))])


def corpus_onnx():
    out = CORPUS / "onnx"
    clean(out)
    for name, data in onnx_models():
        onnx.load_from_string(data)  # a valid ModelProto
        write(out / f"{name}.onnx", data)
    write(FIXTURES / "onnx" / "weights.bin", rnd([64], 11).tobytes())


# ---- data files --------------------------------------------------------------------------------

def fixtures_data():
    n = helper.make_node
    write(FIXTURES / "data" / "image.onnx", model(
        [n("Flatten", ["input"], ["f"], axis=1), n("Gemm", ["f", "w", "b"], ["logits"], transB=1)],
        [vi("input", F, ["N", 1, 8, 8])], [vi("logits", F, ["N", 4])],
        [init("w", rnd([4, 64], 1)), init("b", rnd([4], 2))]))
    write(FIXTURES / "data" / "text.onnx", model(
        [n("Gather", ["emb", "input_ids"], ["h"], axis=0), n("Cast", ["attention_mask"], ["mf"], to=F),
         n("Unsqueeze", ["mf", "ax"], ["mu"]), n("Mul", ["h", "mu"], ["logits"])],
        [vi("input_ids", I64, ["N", "T"]), vi("attention_mask", I64, ["N", "T"])],
        [vi("logits", F, ["N", "T", 8])], [init("emb", rnd([16, 8], 3)), init("ax", np.array([2], np.int64))]))


def corpus_data():
    out = CORPUS / "data"
    clean(out)
    labels = np.array([0, 3, 1, 2, 3], np.int64)
    write(out / "image-labels.safetensors",
          st_from([("input", arr("F32", [5, 1, 8, 8], 1)), ("label", ("I64", [5], labels.tobytes()))]))
    write(out / "image-no-labels.safetensors", st_from([("input", arr("F32", [3, 1, 8, 8], 2))]))
    write(out / "image-own-name.safetensors",
          st_from([("input_x", arr("F32", [2, 1, 8, 8], 3)), ("label", ("I64", [2], labels[:2].tobytes()))]))
    write(out / "image-wrong-dims.safetensors",
          st_from([("input", arr("F32", [2, 1, 4, 4], 4)), ("label", ("I64", [2], labels[:2].tobytes()))]))
    ids = np.array([[1, 2, 3, 0], [4, 5, 0, 0]], np.int64)
    mask = (ids != 0).astype(np.int64)
    write(out / "text.safetensors", st_from([("input_ids", ("I64", [2, 4], ids.tobytes())),
                                             ("attention_mask", ("I64", [2, 4], mask.tobytes()))]))
    write(out / "text-labels.safetensors",
          st_from([("input_ids", ("I64", [2, 4], ids.tobytes())),
                   ("attention_mask", ("I64", [2, 4], mask.tobytes())),
                   ("label", ("I64", [2], np.array([1, 0], np.int64).tobytes()))]))
    write(out / "text-no-mask.safetensors", st_from([("input_ids", ("I64", [2, 4], ids.tobytes()))]))
    write(out / "rows-differ.safetensors",
          st_from([("input", arr("F32", [3, 1, 8, 8], 5)), ("label", ("I64", [2], labels[:2].tobytes()))]))


# ---- text data ---------------------------------------------------------------------------------

def fixtures_text():
    sys.path.insert(0, str(ROOT.parent / "tests" / "fixtures"))
    import gen_hf
    d = FIXTURES / "data" / "tokenizer"
    d.mkdir(parents=True, exist_ok=True)
    gen_hf.gpt2_tokenizer(d)
    for name in ["vocab.json", "merges.txt", "tokenizer_config.json"]:
        (d / name).unlink()  # the harness reads tokenizer.json and the special tokens


def corpus_text():
    out = CORPUS / "text_data"
    clean(out)
    JSONL, TXT, TRUNC, WIN = 1, 0, 2, 4
    lines = ["the cat sat on the mat", "a dog", "hello world, this is a test",
             "one two three four five six seven eight nine ten eleven twelve"]
    jl = "".join(json.dumps({"text": t}) + "\n" for t in lines)
    seeds = {
        "jsonl": (JSONL, jl),
        "jsonl-labels-ids": (JSONL, "".join(json.dumps({"text": t, "label": i % 2, "id": f"d{i}",
                                                        "extra": [1, {}]}) + "\n"
                                            for i, t in enumerate(lines))),
        "jsonl-int-ids": (JSONL, '{"text": "a", "id": 1}\n{"text": "b", "id": 2}\n'),
        "jsonl-dup-id": (JSONL, '{"text": "a", "id": 1}\n{"text": "b", "id": "1"}\n'),
        "jsonl-truncate": (JSONL | TRUNC, jl),
        "jsonl-windows": (JSONL | WIN, jl),
        "jsonl-escapes": (JSONL, '{"text": "caf\\u00e9 \\ud83d\\ude00 tab\\t"}\n'),
        "jsonl-lone-surrogate": (JSONL, '{"text": "x\\ud800"}\n'),
        "jsonl-bad-line": (JSONL, '{"text": "a"}\n{"text": \n'),
        "jsonl-not-object": (JSONL, '["a"]\n'),
        "jsonl-no-text": (JSONL, '{"label": 1}\n'),
        "jsonl-bad-label": (JSONL, '{"text": "a", "label": -2}\n'),
        "jsonl-some-labels": (JSONL, '{"text": "a", "label": 1}\n{"text": "b"}\n'),
        "jsonl-forget": (JSONL, jl + "--forget--\n" + json.dumps({"text": lines[1]}) +
                         "\n" + json.dumps({"text": "new text"}) + "\n"),
        "txt": (TXT, "\n".join(lines) + "\n"),
        "txt-blank-crlf": (TXT, "the cat\r\n\r\n  \n\ta dog\r\n"),
        "txt-windows": (TXT | WIN, " ".join(lines) + "\n"),
        "txt-forget": (TXT | TRUNC, "\n".join(lines) + "\n--forget--\nthe cat sat on the mat\nzzz\n"),
        "txt-empty": (TXT, ""),
    }
    for name, (flags, body) in seeds.items():
        write(out / f"{name}.bin", bytes([flags]) + body.encode())
    write(out / "txt-bad-utf8.bin", bytes([TXT]) + b"ok\n\xc3\x28 bad\n")


def tokenizer_json(vocab_size=400, prefix=False, clip=False):
    """A small byte-level BPE trained by `tokenizers` on fixed text (no downloads)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    words = ("the quick brown fox jumps over the lazy dog it's we'll THEY'RE 2024 12345 "
             "héllo wörld naïve café Ελληνικά русский 中文 한국어 😀 👍🏽 ... !!! ?? -- ").split(" ")
    text = [" ".join(words[i:] + words[:i]) for i in range(len(words))] * 20
    if clip:
        tk = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
        tk.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                              normalizers.Lowercase()])
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                                 behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = ["<|startoftext|>", "<|endoftext|>"]
        tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, end_of_word_suffix="</w>",
                                 show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix)
        tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(text, tr)
    return json.loads(tk.to_str())


def corpus_tokenizer():
    """fuzz_tokenizer: tokenizer.json files (inputs starting with '{') and texts for the fixed
    tokenizer in fixtures/tokenizer/ (every other input)."""
    out = CORPUS / "tokenizer"
    clean(out)
    fixed = tokenizer_json(400)
    write(FIXTURES / "tokenizer" / "tokenizer.json", jdump(fixed))
    tiny = tokenizer_json(280)
    write(out / "gpt2-style.json", jdump(tiny))
    write(out / "prefix-space.json", jdump(tokenizer_json(270, prefix=True)))
    clip = tokenizer_json(300, clip=True)
    write(out / "clip-style.json", jdump(clip))
    conv = json.loads(json.dumps(clip))  # as transformers' CLIPConverter writes it
    split, bl = conv["pre_tokenizer"]["pretokenizers"]
    split["pattern"]["Regex"] = split["pattern"]["Regex"].replace("<\\|startoftext\\|>|<\\|endoftext\\|>|", "")
    bl["use_regex"] = True
    conv["model"]["continuing_subword_prefix"] = ""
    write(out / "clip-converter.json", jdump(conv))
    pair = json.loads(json.dumps(tiny))
    pair["model"]["merges"] = [m.split(" ") for m in pair["model"]["merges"]]
    write(out / "pair-merges.json", jdump(pair))
    added = json.loads(json.dumps(tiny))
    n = len(added["model"]["vocab"])
    added["added_tokens"] += [
        {"id": n, "content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False, "special": True},
        {"id": n + 1, "content": "word", "single_word": True, "lstrip": False, "rstrip": True, "normalized": True, "special": False}]
    added["post_processor"] = {"type": "RobertaProcessing", "sep": ["<|endoftext|>", 0], "cls": ["<|endoftext|>", 0],
                               "trim_offsets": True, "add_prefix_space": False}
    write(out / "added-roberta.json", jdump(added))
    tpl = json.loads(json.dumps(tiny))
    tpl["post_processor"] = {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                             "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}}}
    write(out / "template.json", jdump(tpl))
    small = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
             "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
             "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                                 "use_regex": True},
             "model": {"type": "BPE", "dropout": None, "unk_token": "a", "continuing_subword_prefix": "##",
                       "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": False, "ignore_merges": True,
                       "vocab": {"a": 0, "b": 1, "##a": 2, "##b": 3, "ab": 4, "##ab": 5, "Ġ": 6}, "merges": ["a ##b", "##a ##b"]}}
    write(out / "prefix-unk.json", jdump(small))
    for name, (key, val) in {"refused-wordpiece.json": (("model", "type"), "WordPiece"),
                             "refused-nfkc.json": (("normalizer",), {"type": "NFKC"}),
                             "refused-dropout.json": (("model", "dropout"), 0.1)}.items():
        j = json.loads(json.dumps(small))
        o = j
        for k in key[:-1]:
            o = o[k]
        o[key[-1]] = val
        write(out / name, jdump(j))
    texts = {"plain.txt": "Hello world, it's the quick brown fox.\n", "spaces.txt": "a  b\t\tc \r\n d   ",
             "scripts.txt": "héllo Ελληνικά русский 中文 한국어 עברית العربية हिन्दी ไทย",
             "emoji.txt": "😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 1️⃣", "numbers.txt": "123 ٠١٢ ０１２ ½ Ⅻ",
             "contractions.txt": "I'M you'LL we'Re 's 'S ''s", "special.txt": "x<|endoftext|>y <|endoftext|><|endoftext|>",
             "lines.txt": "one\ntwo two\nthree three three\n"}
    for name, t in texts.items():
        write(out / name, t.encode())
    write(out / "invalid-utf8.txt", b"ab\xe2\x82 cd \xff")
    write(out / "surrogate.txt", b"\xed\xa0\x80")


def main():
    os.chdir(ROOT)
    if sys.argv[1:] == ["tokenizer"]:  # only fuzz_tokenizer's seeds and fixture
        corpus_tokenizer()
        return 0
    corpus_safetensors()
    fixtures_shards()
    corpus_index()
    hf_fixtures_and_configs()
    fixtures_peft()
    corpus_peft()
    corpus_spec()
    corpus_onnx()
    fixtures_data()
    corpus_data()
    fixtures_text()
    corpus_text()
    corpus_tokenizer()
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file() and
                (CORPUS in p.parents or FIXTURES in p.parents))
    print(f"make_corpus: {total} bytes in fuzz/corpus and fuzz/fixtures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
