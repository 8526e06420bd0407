"""bep-export CHECKPOINT --out DIR: the visible (binary) weights for deployment, as packed-bit .npz and/or C.

Only what inference needs leaves: W = sign(H) packed per docs/ALGORITHM.md section 1, the packed prototypes and the
fitted encoder. The int16 hidden weights (training state) stay behind. Layouts: docs/EXPORT.md.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from .common import StrictParser, add_version, run_cli

EXPORT_FORMAT = "bep-gpu-export"
EXPORT_VERSION = 1
NPZ_NAME = "bep_model.npz"
C_FILES = ("bep_model.h", "bep_infer.h", "bep_infer.c")


def build_parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="bep-export", description=__doc__.splitlines()[0])
    add_version(p)
    p.add_argument("checkpoint", help="a bep-gpu checkpoint (model.npz or checkpoint.npz)")
    p.add_argument("--out", required=True, help="directory to write into (created if missing)")
    p.add_argument("--format", choices=["npz", "c", "both"], default="both",
                   help=f"npz: {NPZ_NAME}; c: {', '.join(C_FILES)}; (default: both)")
    return p


# --- what gets exported ----------------------------------------------------------------------------------------
def matrices(model) -> list[tuple[str, np.ndarray]]:
    """(name, W = sign(H) as uint64 words (K_out, n_words(K_in))) in forward order, for hidden.<name>:
    "0", "1", ... for an MLP or a convnet (a conv layer's filters as rows over (i, j, c), c fastest), "xs", "ss",
    "sy" for an RNN."""
    from ..bits import pack_bits

    return [(name, pack_bits(h.reshape(h.shape[0], -1))) for name, h in model.hidden.items()]


def encoder_arrays(model) -> dict[str, np.ndarray]:
    """The fitted encoder's arrays: thresholds (F, B) float64 unless sign; expand (N, D) +-1 with --expand."""
    from ..errors import UserError

    if model.encoder is None:
        raise UserError(f"checkpoint {model.path} stores no encoder (weights only): nothing maps raw features to "
                        "its inputs; export a model.npz written by bep-train")
    state = model.encoder.state()
    unknown = set(state) - {"thresholds", "expand"}
    if unknown:
        raise UserError(f"encoder {model.encoder.spec}: cannot export its state {sorted(unknown)}")
    return state


def n_features(model, enc: dict) -> int:
    """Raw features per sample (MLP), per time step (RNN) or per pixel (conv)."""
    if "thresholds" in enc:
        return int(enc["thresholds"].shape[0])
    return int(enc["expand"].shape[1]) if "expand" in enc else model.n_inputs


def export_npz(model, path: str) -> None:
    from ..bits import pack_bits
    from ..checkpoint import atomic_write

    enc = encoder_arrays(model)
    arrays = {"format": np.array(EXPORT_FORMAT), "version": np.array(EXPORT_VERSION), "kind": np.array(model.kind),
              "sizes": np.array(model.sizes, dtype=np.int64), "n_classes": np.array(model.n_classes),
              "n_features": np.array(n_features(model, enc)), "encoder.spec": np.array(model.encoder.spec),
              "prototypes": pack_bits(model.prototypes).astype("<u8"), "classes": np.asarray(model.classes)}
    for name, words in matrices(model):
        arrays[f"weights.{name}"] = words.astype("<u8")
    if "thresholds" in enc:
        arrays["encoder.thresholds"] = enc["thresholds"].astype("<f8")
    if "expand" in enc:
        arrays["encoder.expand"] = pack_bits(enc["expand"]).astype("<u8")
    if model.kind == "rnn":
        arrays["window"] = np.array(int(model.config.window))
    if model.kind == "conv":
        arrays["conv"] = np.array([[g.c_out, g.k, g.stride, g.pad] for g in model.task.geoms], dtype=np.int64)
        arrays["conv_pool"] = np.array([g.pool for g in model.task.geoms], dtype=np.int64)
        arrays["image_shape"] = np.array(model.config.image_shape, dtype=np.int64)
    atomic_write(path, lambda f: np.savez(f, **arrays))


# --- C ----------------------------------------------------------------------------------------------------------
def words32(words64: np.ndarray, k: int) -> np.ndarray:
    """uint64 rows -> uint32 rows of ceil(k / 32) words, same bit order (bit j in word j / 32, bit j % 32)."""
    w = np.ascontiguousarray(words64.astype("<u8")).view("<u4")
    return w[:, : (k + 31) // 32]


def float32_below(q: np.ndarray) -> np.ndarray:
    """The largest float32 <= q, elementwise: for every float32 x, x > q (float64) iff x > this (float32)."""
    f = q.astype(np.float32)
    return np.where(f.astype(np.float64) > q, np.nextafter(f, np.float32(-np.inf)), f)


def _c_array(ctype: str, name: str, values, fmt, comment: str) -> str:
    items = [fmt(v) for v in np.ravel(values)]
    body = ",\n".join("    " + ", ".join(items[i:i + 8]) for i in range(0, len(items), 8))
    return f"/* {comment} */\nstatic const {ctype} {name}[{len(items)}] = {{\n{body}\n}};\n"


def _u32(v) -> str:
    return f"0x{int(v):08x}u"


def _f32(v) -> str:
    text = f"{float(v):.9g}"  # 9 significant digits round-trip a float32
    return text + ("" if any(c in text for c in ".e") else ".0") + "f"


def model_header(model) -> str:
    enc = encoder_arrays(model)
    n_feat = n_features(model, enc)
    bits = int(enc["thresholds"].shape[1]) if "thresholds" in enc else 0
    enc_out = n_feat * max(bits, 1)
    expand = int(enc["expand"].shape[0]) if "expand" in enc else 0
    mats = matrices(model)
    widths = list(model.sizes) + [enc_out, model.n_classes]
    geoms = model.task.geoms if model.kind == "conv" else []
    widths += [g.h_in * g.w_in * g.c_in for g in geoms] + [g.h_out * g.w_out * g.c_out for g in geoms]
    out = [f"/* Generated by bep-export from {os.path.basename(model.path)}: {model.kind} {model.sizes}, "
           f"{model.n_classes} classes, encoder {model.encoder.spec}.\n   Layout: docs/EXPORT.md. Visible weights "
           "only, bit 1 = +1, bit j of a row in word j / 32 at bit j % 32, padding bits 0.\n"
           "   Include in one translation unit only (bep_infer.c): the arrays are static. */",
           "#ifndef BEP_MODEL_H", "#define BEP_MODEL_H", "#include <stdint.h>", "",
           f"#define BEP_KIND_{model.kind.upper()} 1",
           f"#define BEP_N_FEATURES {n_feat}  /* raw features per "
           f"{ {'rnn': 'time step', 'conv': 'pixel'}.get(model.kind, 'sample')} */",
           f"#define BEP_ENC_BITS {bits}  /* thresholds per feature (thermometer); 0 = sign encoder, x >= 0 */",
           f"#define BEP_ENC_OUT {enc_out}  /* encoded bits: feature f's bits at f * BEP_ENC_BITS + i */",
           f"#define BEP_EXPAND {expand}  /* fixed +-1 expansion sign(E b) to this many inputs; 0 = none */",
           f"#define BEP_N_INPUTS {model.n_inputs}",
           f"#define BEP_N_CLASSES {model.n_classes}",
           f"#define BEP_LAST_WIDTH {model.sizes[-1]}  /* width the prototypes read */",
           f"#define BEP_MAX_WIDTH {max(widths)}",
           "#define BEP_WORDS(n) (((n) + 31) / 32)", ""]
    if model.kind == "rnn":
        kx, ks, ky = model.sizes
        out += [f"#define BEP_KX {kx}", f"#define BEP_KS {ks}", f"#define BEP_KY {ky}",
                f"#define BEP_WINDOW {int(model.config.window)}  /* use only the last W steps; 0 = all */", ""]
    elif model.kind == "conv":
        dense = [flat_size(geoms)] + model.task.dense_sizes
        rows = ",\n".join(f"    {{{g.h_in}, {g.w_in}, {g.c_in}, {g.c_out}, {g.k}, {g.stride}, {g.pad}, {g.pool}}}"
                          for g in geoms)
        out += [f"#define BEP_IMAGE_H {geoms[0].h_in}", f"#define BEP_IMAGE_W {geoms[0].w_in}",
                f"#define BEP_N_CONV {len(geoms)}", f"#define BEP_MAX_FAN_IN {max(g.fan_in for g in geoms)}",
                "/* per conv layer: input H, W, C, then C_out, kernel k, stride, padding (padding reads +1), pooling "
                "(2: 2 x 2 majority, ties to the window's top-left sign) */",
                f"static const int bep_conv_geom[BEP_N_CONV][8] = {{\n{rows}\n}};",
                f"#define BEP_N_LAYERS {len(dense) - 1}  /* dense layers after the conv layers */",
                f"static const int bep_widths[BEP_N_LAYERS + 1] = {{{', '.join(map(str, dense))}}};", ""]
    else:
        out += [f"#define BEP_N_LAYERS {len(mats)}",
                f"static const int bep_widths[BEP_N_LAYERS + 1] = {{{', '.join(map(str, model.sizes))}}};", ""]
    names = []
    for (name, words), k_in in zip(mats, [m.k_in for m in model.layers()]):
        names.append(f"bep_w_{name}")
        out.append(_c_array("uint32_t", names[-1], words32(words, k_in), _u32,
                            f"W = sign(hidden.{name}): {words.shape[0]} rows of BEP_WORDS({k_in}) words"))
    if model.kind == "mlp":
        out += [f"static const uint32_t *const bep_weights[BEP_N_LAYERS] = {{{', '.join(names)}}};", ""]
    if model.kind == "conv":
        out += [f"static const uint32_t *const bep_conv_weights[BEP_N_CONV] = {{{', '.join(names[:len(geoms)])}}};",
                f"static const uint32_t *const bep_weights[BEP_N_LAYERS] = {{{', '.join(names[len(geoms):])}}};", ""]
    from ..bits import pack_bits

    out.append(_c_array("uint32_t", "bep_prototypes", words32(pack_bits(model.prototypes), model.sizes[-1]), _u32,
                        f"prototypes: {model.n_classes} rows of BEP_WORDS(BEP_LAST_WIDTH) words"))
    if bits:
        out.append(_c_array("float", "bep_thresholds", float32_below(enc["thresholds"]), _f32,
                            "thresholds[f * BEP_ENC_BITS + i], rounded down to float32 so that x > q matches the "
                            "float64 comparison for every float32 x"))
    if expand:
        out.append(_c_array("uint32_t", "bep_expand", words32(pack_bits(enc["expand"]), enc_out), _u32,
                            f"expansion E: {expand} rows of BEP_WORDS(BEP_ENC_OUT) words"))
    out += ["#endif /* BEP_MODEL_H */", ""]
    return "\n".join(out)


INFER_H = """\
/* bep-gpu inference on packed binary weights (bep-export). Layout and semantics: docs/EXPORT.md. */
#ifndef BEP_INFER_H
#define BEP_INFER_H
#include <stdint.h>

/* Encode BEP_N_FEATURES floats (an MLP sample, an RNN time step, a convnet pixel) into BEP_N_INPUTS bits:
   bits[j / 32] bit j % 32, +1 = bit 1, padding bits 0. bits holds BEP_WORDS(BEP_MAX_WIDTH) words. */
void bep_encode(const float *x, uint32_t *bits);

/* The predicted class: argmax of the prototype logits, lowest index on ties. MLP: x holds BEP_N_FEATURES floats
   (n_steps is ignored). Conv: x holds one image, BEP_IMAGE_H x BEP_IMAGE_W pixels of BEP_N_FEATURES channels,
   row-major with channels innermost (n_steps is ignored).
   RNN: x holds n_steps >= 1 time steps of BEP_N_FEATURES floats, step-major; with
   BEP_WINDOW > 0 only the last BEP_WINDOW steps are used. Uses static buffers: not reentrant. */
int bep_predict(const float *x, int n_steps);

#endif /* BEP_INFER_H */
"""

INFER_C = """\
/* bep-gpu inference on packed binary weights (bep-export): sign(0) = +1 everywhere, integers only after the
   encoder. Reproduces bep_gpu.load(...).predict bit for bit for float32 inputs. */
#include <string.h>

#include "bep_model.h"
#include "bep_infer.h"

#define BEP_BUF_WORDS BEP_WORDS(BEP_MAX_WIDTH)
#define BEP_SET(bits, j) ((bits)[(j) >> 5] |= (uint32_t)1 << ((j) & 31))

static int bep_popcount(uint32_t v) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_popcount(v);
#else
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (int)((v * 0x01010101u) >> 24);
#endif
}

/* +-1 dot product of two packed rows of k values: k - 2 popcount(a XOR w) (zero padding cancels). */
static int32_t bep_dot(const uint32_t *a, const uint32_t *w, int k) {
    int i, pop = 0;
    for (i = 0; i < BEP_WORDS(k); i++) pop += bep_popcount(a[i] ^ w[i]);
    return (int32_t)k - 2 * pop;
}

/* out = sign(W in) for W of k_out packed rows over k_in inputs. */
static void bep_layer(const uint32_t *in, int k_in, const uint32_t *w, int k_out, uint32_t *out) {
    int j;
    memset(out, 0, BEP_WORDS(k_out) * sizeof(uint32_t));
    for (j = 0; j < k_out; j++)
        if (bep_dot(in, w + (long)j * BEP_WORDS(k_in), k_in) >= 0) BEP_SET(out, j);
}

void bep_encode(const float *x, uint32_t *bits) {
    int f;
#if BEP_EXPAND > 0
    static uint32_t raw[BEP_WORDS(BEP_ENC_OUT)];
#else
    uint32_t *raw = bits;
#endif
    memset(raw, 0, BEP_WORDS(BEP_ENC_OUT) * sizeof(uint32_t));
    for (f = 0; f < BEP_N_FEATURES; f++) {
#if BEP_ENC_BITS == 0
        if (x[f] >= 0.0f) BEP_SET(raw, f);
#else
        int i;
        for (i = 0; i < BEP_ENC_BITS; i++)
            if (x[f] > bep_thresholds[f * BEP_ENC_BITS + i]) BEP_SET(raw, f * BEP_ENC_BITS + i);
#endif
    }
#if BEP_EXPAND > 0
    bep_layer(raw, BEP_ENC_OUT, bep_expand, BEP_EXPAND, bits);
#endif
}

/* argmax_c <P_c, a>, lowest index on ties. */
static int bep_readout(const uint32_t *a) {
    int c, best = 0;
    int32_t best_logit = bep_dot(a, bep_prototypes, BEP_LAST_WIDTH);
    for (c = 1; c < BEP_N_CLASSES; c++) {
        int32_t logit = bep_dot(a, bep_prototypes + (long)c * BEP_WORDS(BEP_LAST_WIDTH), BEP_LAST_WIDTH);
        if (logit > best_logit) best = c, best_logit = logit;
    }
    return best;
}

#ifdef BEP_KIND_MLP
int bep_predict(const float *x, int n_steps) {
    static uint32_t buf[2][BEP_BUF_WORDS];
    int l, cur = 0;
    (void)n_steps;
    bep_encode(x, buf[0]);
    for (l = 0; l < BEP_N_LAYERS; l++, cur ^= 1)
        bep_layer(buf[cur], bep_widths[l], bep_weights[l], bep_widths[l + 1], buf[cur ^ 1]);
    return bep_readout(buf[cur]);
}
#elif defined(BEP_KIND_CONV)
#define BEP_GET(bits, j) (((bits)[(j) >> 5] >> ((j) & 31)) & 1u)

/* out (H' x W' x C_out bits, channels innermost) = sign of the convolution of in (H x W x C bits) with the filters
   w (C_out rows over the k x k x C patch bits (i, j, c), c fastest); positions outside the map read +1. */
static void bep_conv_layer(const uint32_t *in, const int *g, const uint32_t *w, uint32_t *out) {
    static uint32_t patch[BEP_WORDS(BEP_MAX_FAN_IN)];
    const int h = g[0], wd = g[1], c = g[2], c_out = g[3], k = g[4], s = g[5], pad = g[6];
    const int ho = (h + 2 * pad - k) / s + 1, wo = (wd + 2 * pad - k) / s + 1, fan = k * k * c;
    int y, x, i, j, ch, o;
    memset(out, 0, BEP_WORDS(ho * wo * c_out) * sizeof(uint32_t));
    for (y = 0; y < ho; y++)
        for (x = 0; x < wo; x++) {
            memset(patch, 0, BEP_WORDS(fan) * sizeof(uint32_t));
            for (i = 0; i < k; i++)
                for (j = 0; j < k; j++) {
                    const int yy = y * s + i - pad, xx = x * s + j - pad;
                    const int inside = yy >= 0 && yy < h && xx >= 0 && xx < wd;
                    for (ch = 0; ch < c; ch++)
                        if (!inside || BEP_GET(in, ((long)yy * wd + xx) * c + ch)) BEP_SET(patch, (i * k + j) * c + ch);
                }
            for (o = 0; o < c_out; o++)
                if (bep_dot(patch, w + (long)o * BEP_WORDS(fan), fan) >= 0)
                    BEP_SET(out, ((long)y * wo + x) * c_out + o);
        }
}

/* out = the 2 x 2 majority pooling of in, conv layer g's (H' x W' x C_out) output map; a tie takes the window's
   top-left bit, a last odd row or column is dropped. */
static void bep_pool_layer(const uint32_t *in, const int *g, uint32_t *out) {
    const int h = g[0], wd = g[1], c = g[3], k = g[4], s = g[5], pad = g[6];
    const int wo = (wd + 2 * pad - k) / s + 1, hp = ((h + 2 * pad - k) / s + 1) / 2, wp = wo / 2;
    int y, x, ch;
    memset(out, 0, BEP_WORDS(hp * wp * c) * sizeof(uint32_t));
    for (y = 0; y < hp; y++)
        for (x = 0; x < wp; x++)
            for (ch = 0; ch < c; ch++) {
                const long p = ((long)(2 * y) * wo + 2 * x) * c + ch;
                const uint32_t a0 = BEP_GET(in, p), a1 = BEP_GET(in, p + c), a2 = BEP_GET(in, p + (long)wo * c),
                               a3 = BEP_GET(in, p + (long)wo * c + c);
                if (a0 ? (a1 | a2 | a3) : (a1 & a2 & a3)) BEP_SET(out, ((long)y * wp + x) * c + ch);
            }
}

int bep_predict(const float *x, int n_steps) {
    static uint32_t buf[2][BEP_BUF_WORDS], px[BEP_BUF_WORDS];
    long p;
    int i, l, cur = 0;
    (void)n_steps;
    memset(buf[0], 0, sizeof buf[0]);
    for (p = 0; p < (long)BEP_IMAGE_H * BEP_IMAGE_W; p++) { /* pixel by pixel, channels innermost */
        bep_encode(x + p * BEP_N_FEATURES, px);
        for (i = 0; i < BEP_ENC_OUT; i++)
            if (BEP_GET(px, i)) BEP_SET(buf[0], p * BEP_ENC_OUT + i);
    }
    for (l = 0; l < BEP_N_CONV; l++, cur ^= 1) {
        bep_conv_layer(buf[cur], bep_conv_geom[l], bep_conv_weights[l], buf[cur ^ 1]);
        if (bep_conv_geom[l][7] == 2) {  /* pool back into the buffer the layer read */
            bep_pool_layer(buf[cur ^ 1], bep_conv_geom[l], buf[cur]);
            cur ^= 1;
        }
    }
    for (l = 0; l < BEP_N_LAYERS; l++, cur ^= 1)  /* the last map's bits are already in (y, x, c) order */
        bep_layer(buf[cur], bep_widths[l], bep_weights[l], bep_widths[l + 1], buf[cur ^ 1]);
    return bep_readout(buf[cur]);
}
#else
int bep_predict(const float *x, int n_steps) {
    static uint32_t a[BEP_BUF_WORDS], s[BEP_WORDS(BEP_KS)], next[BEP_WORDS(BEP_KS)], y[BEP_WORDS(BEP_KY)];
    int t, j, first = 0;
    if (BEP_WINDOW > 0 && n_steps > BEP_WINDOW) first = n_steps - BEP_WINDOW;
    memset(s, 0, sizeof s);
    for (j = 0; j < BEP_KS; j++) BEP_SET(s, j); /* s_0 = all +1 */
    for (t = first; t < n_steps; t++) {
        bep_encode(x + (long)t * BEP_N_FEATURES, a);
        memset(next, 0, sizeof next);
        for (j = 0; j < BEP_KS; j++) {
            int32_t z = bep_dot(a, bep_w_xs + (long)j * BEP_WORDS(BEP_KX), BEP_KX) +
                        bep_dot(s, bep_w_ss + (long)j * BEP_WORDS(BEP_KS), BEP_KS);
            if (z >= 0) BEP_SET(next, j);
        }
        memcpy(s, next, sizeof s);
    }
    bep_layer(s, BEP_KS, bep_w_sy, BEP_KY, y);
    return bep_readout(y);
}
#endif
"""


def flat_size(geoms) -> int:
    from ..bep_conv import flat_size as size

    return size(geoms)


def export_c(model, directory: str) -> None:
    from ..checkpoint import atomic_write

    texts = dict(zip(C_FILES, (model_header(model), INFER_H, INFER_C)))
    for name, text in texts.items():
        atomic_write(os.path.join(directory, name), lambda f, t=text: f.write(t.encode()))


def export(checkpoint: str, out: str, fmt: str = "both") -> list[str]:
    """Write the export files into out; returns their paths."""
    from ..errors import UserError
    from ..model import load

    model = load(checkpoint)
    encoder_arrays(model)  # fail before creating anything
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {out} ({e.strerror}); choose another --out") from None
    written = []
    if fmt in ("npz", "both"):
        export_npz(model, os.path.join(out, NPZ_NAME))
        written.append(os.path.join(out, NPZ_NAME))
    if fmt in ("c", "both"):
        export_c(model, out)
        written += [os.path.join(out, name) for name in C_FILES]
    return written


def _main(argv) -> None:
    args = build_parser().parse_args(argv)
    for path in export(args.checkpoint, args.out, args.format):
        print(path)


_main.prog = "bep-export"


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
