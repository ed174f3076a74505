#!/usr/bin/env python3
"""Golden test data for gemmaserve's image input (issue 7): transformers' Gemma4ImageProcessor
outputs for deterministic test images, and logits of image prompts through
Gemma4ForConditionalGeneration with a small random vision tower.

A companion of make_golden.py: it imports that script's helpers (config construction, seeded text
weights, bf16 rounding, checkpoint and .npy writers) and writes to its own folder, so the text
golden data of make_golden.py stays byte-identical.

  <out>/
    images/<name>.<png|jpg|gif>        inputs, generated here from fixed formulas (no randomness)
    preprocess/<case>.png              the processor's resized image, rebuilt from pixel_values
                                       (pixel_values == uint8 * float32(1/255), checked)
    preprocess/<case>_pixels.npy       uint8 [8, 768]: whole patch rows of one case (patch order)
    decoded/<name>.png                 PIL's decode of the JPEG/GIF inputs (EXIF applied)
    preprocess.json                    per case: input, max_soft_tokens, resized h/w, patch grid,
                                       num_soft_tokens, pixel formula, PIL-backend max diff
    model/bf16/                        config.json, generation_config.json, model.safetensors
    model/logits_p<i>.npy              float32 [prompt_len, vocab] softcapped logits
    model/image_features_p<i>.npy      float32 [soft tokens, text hidden]: embed_vision output
    model/reference.json               prompts, images, greedy, masks the text layers used

Run:  python3 scripts/golden/make_golden_vision.py --out tests/data/golden_vision
(on the GPU machine, CPU only: copy this script and make_golden.py to .device/vision/ of the
checkout that travels and run it there; about 15 s.)
Needs torch, torchvision, numpy, pillow, safetensors, transformers >= 5.5 (CPU only).
"""

import argparse
import io
import json
import os
import shutil
import sys
import time
import traceback

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden as mg  # noqa: E402

VOCAB = mg.VOCAB
BOI, IMG, EOI = 500, 501, 502  # inside the tiny vocabulary; text ids are drawn from [3, 500)
SPEC = dict(name="vlm_vision", arch="Gemma4ForCausalLM", seed=4004,
            hidden=64, layer_types="ssfsf", heads=2, head_dim=64, global_head_dim=128,
            kv_heads=2, global_kv_heads=1, k_eq_v=True, intermediate=96, moe_intermediate=32,
            experts=8, top_k=3, window=12, prompt_lens=[], vision=True)
VISION = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=2, head_dim=24, patch_size=16, position_embedding_size=128,
              pooling_kernel_size=3, standardize=True, rms_norm_eps=1e-6,
              hidden_activation="gelu_pytorch_tanh")
MODEL_BUDGET = 70
FAILURES = []


def log(*a):
    print(*a, flush=True)


def section(name, fn, *args):
    """Runs one part; a failure is logged and the others still run."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.stdout.flush()
        FAILURES.append(name)
        return None


# ---------------------------------------------------------------------------------------------
# Deterministic test images.
# ---------------------------------------------------------------------------------------------
def pattern(w, h, phase):
    """Smooth colour waves + hard-edged stripes, a disc and a fine checkerboard (antialiasing)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 127.0 * np.sin(2 * np.pi * x / max(w / 3.1, 1) + phase) * np.cos(
        2 * np.pi * y / max(h / 2.3, 1))
    g = 255.0 * (x + 0.5) / w * (0.6 + 0.4 * np.cos(2 * np.pi * y / max(h / 1.7, 1) + phase))
    b = np.where(((x + 2 * y + 7 * phase) // 11) % 2 == 0, 230.0, 25.0)
    cx, cy, rad = 0.62 * w, 0.41 * h, 0.22 * min(w, h)
    disc = (x - cx) ** 2 + (y - cy) ** 2 < rad ** 2
    r = np.where(disc, 250.0, r)
    g = np.where(disc, 40.0, g)
    checker = (x < w / 4) & (y > 0.7 * h) & (((x // 2) + (y // 2)) % 2 == 0)
    img = np.stack([r, g, b], -1)
    img[checker] = [255.0, 255.0, 255.0]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_images(out):
    from PIL import Image
    d = os.path.join(out, "images")
    os.makedirs(d, exist_ok=True)
    imgs = {}

    def save(name, im, fmt="PNG", **kw):
        path = os.path.join(d, name)
        im.save(path, fmt, **kw)
        imgs[name] = path

    save("rgb_640x480.png", Image.fromarray(pattern(640, 480, 0.3)))
    save("rgb_300x900.png", Image.fromarray(pattern(300, 900, 1.1)))
    save("rgb_1000x200.png", Image.fromarray(pattern(1000, 200, 2.0)))
    save("rgb_384x384.png", Image.fromarray(pattern(384, 384, 0.7)))
    save("rgb_50x30.png", Image.fromarray(pattern(50, 30, 1.9)))
    save("rgb_2000x40.png", Image.fromarray(pattern(2000, 40, 2.6)))
    base = pattern(200, 150, 0.9)
    yy, xx = np.mgrid[0:150, 0:200]
    alpha = np.clip((xx * 255) // 199 ^ (yy % 37), 0, 255).astype(np.uint8)
    save("rgba_200x150.png", Image.fromarray(np.dstack([base, alpha]), "RGBA"))
    gray = pattern(257, 131, 0.4)[..., 0]
    save("gray_257x131.png", Image.fromarray(gray, "L"))
    la = np.dstack([pattern(100, 100, 1.3)[..., 1], ((np.mgrid[0:100, 0:100][0] * 5) % 256)])
    save("graya_100x100.png", Image.fromarray(la.astype(np.uint8), "LA"))
    pal = Image.fromarray(pattern(120, 90, 1.7)).quantize(colors=64, method=Image.Quantize.MEDIANCUT,
                                                           dither=Image.Dither.NONE)
    save("palette_120x90.png", pal, transparency=3)
    f0 = Image.fromarray(pattern(80, 60, 0.2)).quantize(colors=32, dither=Image.Dither.NONE)
    f1 = Image.fromarray(pattern(80, 60, 2.2)).quantize(colors=32, dither=Image.Dither.NONE)
    save("anim_80x60.gif", f0, "GIF", save_all=True, append_images=[f1], duration=100, loop=0)
    # EXIF orientations 1..8 on a small JPEG, and a larger one for preprocessing.
    for o in range(1, 9):
        ex = Image.Exif()
        ex[0x0112] = o
        save(f"exif{o}_40x24.jpg", Image.fromarray(pattern(40, 24, 0.5 + o)), "JPEG", quality=95,
             exif=ex.tobytes())
    ex = Image.Exif()
    ex[0x0112] = 6
    save("exif6_160x120.jpg", Image.fromarray(pattern(160, 120, 1.4)), "JPEG", quality=92,
         exif=ex.tobytes())
    return imgs


# ---------------------------------------------------------------------------------------------
# Preprocessing.
# ---------------------------------------------------------------------------------------------
PRE_CASES = [
    ("rgb_640x480_280", "rgb_640x480.png", 280),
    ("rgb_640x480_70", "rgb_640x480.png", 70),
    ("rgb_300x900_70", "rgb_300x900.png", 70),
    ("rgb_1000x200_140", "rgb_1000x200.png", 140),
    ("rgb_384x384_70", "rgb_384x384.png", 70),  # already the target size: no resize
    ("rgb_50x30_70", "rgb_50x30.png", 70),  # upscaling
    ("rgb_2000x40_70", "rgb_2000x40.png", 70),  # one side rounds to 0 -> 48
    ("rgba_200x150_70", "rgba_200x150.png", 70),
    ("gray_257x131_140", "gray_257x131.png", 140),
    ("graya_100x100_70", "graya_100x100.png", 70),
    ("palette_120x90_70", "palette_120x90.png", 70),
    ("anim_80x60_70", "anim_80x60.gif", 70),
    ("exif6_160x120_70", "exif6_160x120.jpg", 70),
]
F32_INV255 = torch.tensor(1 / 255, dtype=torch.float32)


def load_like_transformers(path):
    from transformers.image_utils import load_image
    return load_image(path)


def open_plain(path):
    from PIL import Image
    im = Image.open(path)
    im.load()
    return im


def processed(proc_cls, im, budget):
    p = proc_cls(max_soft_tokens=budget)
    out = p(images=[im], return_tensors="pt")
    return out["pixel_values"][0], out["image_position_ids"][0], int(
        out["num_soft_tokens_per_image"][0])


def rebuild_u8(pv, pos):
    """uint8 image [H, W, 3] from the valid patches, placed by their (x, y) positions; checks the
    raster order and the uint8 * f32(1/255) formula."""
    valid = (pos != -1).all(-1)
    n = int(valid.sum())
    assert bool(valid[:n].all()) and not bool(valid[n:].any()), "padding not at the end"
    pv, pos = pv[:n], pos[:n]
    pw, ph = int(pos[:, 0].max()) + 1, int(pos[:, 1].max()) + 1
    assert pw * ph == n
    raster = torch.stack(torch.meshgrid(torch.arange(pw), torch.arange(ph), indexing="xy"), -1)
    assert torch.equal(pos.long(), raster.reshape(n, 2)), "positions are not raster (x, y) order"
    u8 = torch.round(pv.double() * 255).clamp(0, 255).to(torch.uint8)
    exact = torch.equal(u8.float() * F32_INV255, pv)
    formula = "uint8 * float32(1/255)"
    if not exact:
        formula = "uint8 / 255 (fp32)" if torch.equal(u8.float() / 255.0, pv) else "other"
    img = np.zeros((ph * 16, pw * 16, 3), np.uint8)
    pn = u8.numpy().reshape(n, 16, 16, 3)
    for i in range(n):
        x, y = int(pos[i, 0]), int(pos[i, 1])
        img[y * 16:(y + 1) * 16, x * 16:(x + 1) * 16] = pn[i]
    return img, u8, formula, (ph, pw)


def run_preprocess(out, imgs):
    import transformers as tf
    from PIL import Image
    dpre = os.path.join(out, "preprocess")
    ddec = os.path.join(out, "decoded")
    os.makedirs(dpre, exist_ok=True)
    os.makedirs(ddec, exist_ok=True)
    info = {"transformers_version": tf.__version__, "torch_version": torch.__version__,
            "cases": []}
    try:
        import tempfile
        tmp = tempfile.mkdtemp()
        tf.Gemma4ImageProcessor().save_pretrained(tmp)
        auto = tf.AutoImageProcessor.from_pretrained(tmp)
        info["auto_image_processor_class"] = type(auto).__name__
        info["auto_image_processor_module"] = type(auto).__module__
    except Exception as e:  # noqa: BLE001
        info["auto_image_processor_class"] = f"failed: {e!r}"[:200]
    log(f"AutoImageProcessor default: {info.get('auto_image_processor_class')}")
    pil_cls = getattr(tf, "Gemma4ImageProcessorPil", None)
    # Decoded inputs that a different decoder may reproduce only approximately.
    for name in sorted(imgs):
        if name.endswith(".jpg") or name.endswith(".gif"):
            im = load_like_transformers(imgs[name])
            Image.fromarray(np.asarray(im.convert("RGB"))).save(
                os.path.join(ddec, name.rsplit(".", 1)[0] + ".png"))
    for case, fname, budget in PRE_CASES:
        path = imgs[fname]
        im = load_like_transformers(path) if fname.endswith(".jpg") else open_plain(path)
        pv, pos, ntok = processed(tf.Gemma4ImageProcessor, im, budget)
        img, u8, formula, (ph, pw) = rebuild_u8(pv, pos)
        Image.fromarray(img).save(os.path.join(dpre, case + ".png"))
        entry = {"case": case, "input": "images/" + fname, "input_mode": im.mode,
                 "input_size_wh": list(im.size), "max_soft_tokens": budget,
                 "resized_hw": [ph * 16, pw * 16], "patch_grid_hw": [ph, pw],
                 "num_soft_tokens": ntok, "max_patches": int(pv.shape[0]),
                 "pixel_formula": formula, "resized": "preprocess/" + case + ".png"}
        # The same through load_image (EXIF transpose + convert("RGB")): must be identical.
        if not fname.endswith(".jpg"):
            pv2, _, _ = processed(tf.Gemma4ImageProcessor, load_like_transformers(path), budget)
            entry["load_image_identical"] = bool(torch.equal(pv2, pv))
        if case == "rgb_384x384_70":
            # A few whole patch rows (first, second, row starts, last) for the patch-order check.
            rows = sorted({0, 1, 2, pw - 1, pw, pw + 1, 2 * pw + 5, ph * pw - 1})
            np.save(os.path.join(dpre, case + "_pixels.npy"), u8.numpy()[rows], allow_pickle=False)
            entry["pixels"] = "preprocess/" + case + "_pixels.npy"
            entry["pixels_patch_indices"] = rows
        if pil_cls is not None:
            try:
                pvp, posp, ntp = processed(pil_cls, im, budget)
                entry["pil_backend_max_abs_diff_x255"] = float((pvp - pv).abs().max() * 255)
                entry["pil_backend_same_tokens"] = ntp == ntok and torch.equal(posp, pos)
            except Exception as e:  # noqa: BLE001
                entry["pil_backend"] = f"failed: {e!r}"[:200]
        info["cases"].append(entry)
        log(f"  {case}: {im.mode} {im.size} -> {ph * 16}x{pw * 16} (h x w), {ntok} tokens, "
            f"{formula}, pil-backend diff {entry.get('pil_backend_max_abs_diff_x255')}")
    mg.write_json(os.path.join(out, "preprocess.json"), info)


# ---------------------------------------------------------------------------------------------
# Model with a vision tower.
# ---------------------------------------------------------------------------------------------
def make_model():
    import transformers as tf
    text_cfg = mg.make_config(SPEC)  # arch Gemma4ForCausalLM -> the text config alone
    vision_cfg = tf.Gemma4VisionConfig(**VISION)
    kw = dict(text_config=text_cfg, vision_config=vision_cfg, audio_config=None,
              tie_word_embeddings=True, boi_token_id=BOI, image_token_id=IMG, eoi_token_id=EOI)
    try:
        cfg = tf.Gemma4Config(**kw)
    except TypeError:
        for k in ("boi_token_id", "image_token_id", "eoi_token_id"):
            kw.pop(k)
        cfg = tf.Gemma4Config(**kw)
        cfg.boi_token_id, cfg.image_token_id, cfg.eoi_token_id = BOI, IMG, EOI
    spec = dict(SPEC, arch="Gemma4ForConditionalGeneration")
    model = mg.build_model(spec, cfg)
    mg.randomize_text(spec, model)
    randomize_vision(model, spec["seed"])
    mg.round_model_to_bf16(model)
    return spec, model


def randomize_vision(model, seed):
    g = torch.Generator().manual_seed(seed * 11 + 3)
    tensors = {}
    for mod_name in ("vision_tower", "embed_vision"):
        mod = getattr(model.model, mod_name)
        for n, p in mod.named_parameters():
            tensors[f"{mod_name}.{n}"] = p
        for n, b in mod.named_buffers():
            if n in ("std_bias", "std_scale"):
                tensors[f"{mod_name}.{n}"] = b
    left = []
    for name in sorted(tensors):
        t = tensors[name]
        shape = tuple(t.shape)
        if name.endswith("position_embedding_table"):
            v = torch.randn(shape, generator=g) * 0.5
        elif name.endswith("std_bias"):
            v = torch.randn(shape, generator=g) * 2.0
        elif name.endswith("std_scale"):
            v = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("q_norm.weight") or name.endswith("k_norm.weight"):
            v = (0.5 + torch.rand(shape, generator=g)) * 1.2 * shape[0] ** -0.25
        elif "norm" in name and len(shape) == 1:
            v = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("weight") and len(shape) == 2:
            v = torch.randn(shape, generator=g) / shape[1] ** 0.5
        else:
            left.append(name)
            continue
        with torch.no_grad():
            t.copy_(v.to(t.dtype))
    assert not left, f"vision tensors left at init: {left}"
    assert any(n.endswith("std_bias") for n in tensors), "no std_bias buffer"


def forward(model, ids, pv, pos):
    mm = (torch.tensor([ids]) == IMG).long()
    kw = dict(input_ids=torch.tensor([ids]), mm_token_type_ids=mm, use_cache=False)
    if pv is not None:
        kw.update(pixel_values=pv, image_position_ids=pos)
    with torch.no_grad():
        return model(**kw).logits[0].float()


class MaskProbe:
    """Captures the attention mask each text layer receives (True = key visible)."""

    def __init__(self, model):
        self.masks, self.handles = {}, []
        for i, layer in enumerate(mg.text_model_of(model).layers):
            self.handles.append(layer.self_attn.register_forward_pre_hook(
                lambda m, a, k, i=i: self._hook(i, k), with_kwargs=True))

    def _hook(self, i, kwargs):
        m = kwargs.get("attention_mask")
        if m is None:
            self.masks[i] = None
            return
        m = m[0, 0]
        self.masks[i] = (m if m.dtype == torch.bool else m == 0).cpu()

    def close(self):
        for h in self.handles:
            h.remove()


def mask_rows(mask):
    return ["".join("1" if v else "0" for v in row.tolist()) for row in mask]


def run_model(out, imgs):
    import transformers as tf
    spec, model = make_model()
    dm = os.path.join(out, "model")
    d16 = os.path.join(dm, "bf16")
    mg.save_bf16(model, d16)
    sd16, files = mg.read_safetensors_dir(d16)
    msd = model.state_dict()
    for k, v in sd16.items():
        assert k in msd, f"saved tensor {k} is not in the model"
        assert torch.equal(v.float(), msd[k].float()), f"{k}: saved bf16 differs from the model"
    log(f"  model: {len(sd16)} tensors in {files}; vision: "
        f"{sorted(k for k in sd16 if 'vision' in k)}")
    mg.set_embed_scale(model, mg.bf16_round(spec["hidden"] ** 0.5))
    # Images through the default processor at the model budget.
    feats = {}
    for key, fname in (("A", "rgb_640x480.png"), ("B", "rgb_300x900.png")):
        pv, pos, n = processed(tf.Gemma4ImageProcessor, open_plain(imgs[fname]), MODEL_BUDGET)
        feats[key] = (fname, pv, pos, n)
    layouts = [["A"], ["A", "B"]]
    ref = {"config": "model/bf16", "boi_token_id": BOI, "image_token_id": IMG,
           "eoi_token_id": EOI, "max_soft_tokens": MODEL_BUDGET, "prompts": [],
           "embed_scale": mg.bf16_round(spec["hidden"] ** 0.5),
           "mm_token_type_ids": "1 at image_token_id positions, 0 elsewhere",
           "transformers_version": tf.__version__, "torch_version": torch.__version__}
    masks_out = []
    for pi, layout in enumerate(layouts):
        best = None
        for attempt in range(40):
            g = torch.Generator().manual_seed(spec["seed"] * 1000 + pi * 100 + attempt)

            def text(n):
                return torch.randint(3, BOI, (n,), generator=g).tolist()

            ids = [2] + text(5)
            for j, key in enumerate(layout):
                ids += [BOI] + [IMG] * feats[key][3] + [EOI] + text(3 if j + 1 < len(layout) else 8)
            pv = torch.cat([feats[k][1][None] for k in layout])
            pos = torch.cat([feats[k][2][None] for k in layout])
            seq, margins, lg0 = list(ids), [], None
            for step in range(mg.MAX_NEW_TOKENS):
                lg = forward(model, seq, pv, pos)
                if step == 0:
                    lg0 = lg
                top = torch.topk(lg[-1], 2)
                margins.append(float(top.values[0] - top.values[1]))
                seq.append(int(top.indices[0]))
            new = seq[len(ids):]
            bad = any(t in mg.SPECIAL_IDS or t >= BOI for t in new)
            score = -1.0 if bad else min(margins)
            if best is None or score > best[0]:
                best = (score, ids, new, margins, lg0, pv, pos, attempt)
            if score >= 0.03:
                break
        score, ids, new, margins, lg0, pv, pos, attempt = best
        log(f"  prompt {pi}: {len(ids)} tokens, images {layout}, attempt {attempt}, min greedy "
            f"margin {score:.4f}, greedy {new}")
        mg.save_npy(os.path.join(dm, f"logits_p{pi}.npy"), lg0)
        probe = MaskProbe(model)
        captured = []
        hook = model.model.embed_vision.register_forward_hook(
            lambda m, a, o: captured.append(o[0] if isinstance(o, tuple) else o))
        try:
            lg_chk = forward(model, ids, pv, pos)
        finally:
            probe.close()
            hook.remove()
        f = captured[0].detach().float()
        mg.save_npy(os.path.join(dm, f"image_features_p{pi}.npy"), f.reshape(-1, f.shape[-1]))
        assert torch.equal(lg_chk, lg0), "forward is not deterministic"
        lts = mg.layer_types_of(spec)
        pm = {}
        for i, m in sorted(probe.masks.items()):
            if m is not None and lts[i] not in pm:
                pm[lts[i]] = mask_rows(m)
        masks_out.append(pm)
        # Without the block structure (mm_token_type_ids absent): how much the logits move.
        with torch.no_grad():
            lg_causal = model(input_ids=torch.tensor([ids]), pixel_values=pv,
                              image_position_ids=pos, use_cache=False).logits[0].float()
        ref["prompts"].append({
            "ids": ids, "images": [feats[k][0] for k in layout],
            "num_soft_tokens": [feats[k][3] for k in layout], "logits": f"logits_p{pi}.npy",
            "image_features": f"image_features_p{pi}.npy", "greedy": new,
            "greedy_margins": [round(x, 6) for x in margins], "attempt": attempt,
            "max_abs_logit_diff_without_mm_token_type_ids": float((lg_causal - lg0).abs().max())})
    ref["masks"] = "masks.json"
    mg.write_json(os.path.join(dm, "reference.json"), ref)
    with open(os.path.join(dm, "masks.json"), "w") as fh:
        json.dump(masks_out, fh)
        fh.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/golden_vision")
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers as tf
    import PIL
    log(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers "
        f"{tf.__version__}, numpy {np.__version__}, pillow {PIL.__version__}")
    try:
        log(f"torch cpu capability: {torch.backends.cpu.get_cpu_capability()}")
    except Exception:  # noqa: BLE001
        pass
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    t0 = time.time()
    imgs = section("images", make_images, args.out) or {}
    section("preprocess", run_preprocess, args.out, imgs)
    section("model", run_model, args.out, imgs)
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(args.out) for f in fs)
    log(f"\nTotal {size / 1e6:.2f} MB in {args.out}, {time.time() - t0:.1f} s")
    if FAILURES:
        raise SystemExit(f"FAILED parts: {FAILURES}")
    if size > 6e6:
        raise SystemExit("golden vision data larger than 6 MB")


if __name__ == "__main__":
    main()
