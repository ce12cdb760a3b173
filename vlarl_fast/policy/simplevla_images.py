"""SimpleVLA-RL's LIBERO image resize, bit-exact, batched, on any torch device.

SimpleVLA-RL (and OpenVLA-OFT's LIBERO evaluation) prepare each rotated 256x256 frame with
`libero_utils.resize_image`:

    img = tf.image.encode_jpeg(img)                                  # quality 95, 4:2:0
    img = tf.io.decode_image(img, expand_animations=False, dtype=tf.uint8)
    img = tf.image.resize(img, (224, 224), method="lanczos3", antialias=True)
    img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)

This module restates both steps with integer / float32 tensor operations so that the result is
equal, pixel for pixel, to TensorFlow's (tests/policy/test_simplevla_input_parity.py):

* `jpeg_roundtrip`: libjpeg-turbo as TensorFlow calls it. Encoding (`jpeg_set_defaults` +
  `jpeg_set_quality(95)`): RGB->YCbCr with libjpeg's 16-bit fixed-point tables, 2x2 chroma
  downsampling with the alternating 1,2 bias, edge replication to whole blocks, the accurate
  integer forward DCT (`jfdctint.c`), quantisation by reciprocal multiplication (`jcdctmgr.c`).
  Decoding (`tf.io.decode_image`): TensorFlow's default `dct_method` is JDCT_IFAST, so the fast
  integer inverse DCT with its AA&N multiplier table, in the form TensorFlow runs on x86-64: the
  SSE2 routine (`jsimd_idct_ifast_sse2`: 16-bit wrapping arithmetic, `pmulhw` multiplies, saturating
  output), which differs from `jidctfst.c` where saturated colour edges overflow 16 bits; then
  "fancy" triangular chroma upsampling (`jdsample.c`; box upsampling for planes at most 2 wide) and
  libjpeg's YCbCr->RGB tables. The entropy coding is lossless and is skipped. PIL and OpenCV write
  the same JPEG data but decode with the accurate IDCT (JDCT_ISLOW), so neither reproduces
  TensorFlow's pixels.
* `resize_lanczos3`: TensorFlow's `ScaleAndTranslate` kernel (what `tf.image.resize` calls for
  lanczos3 with antialias): per output pixel a span of taps whose float32 weights are computed on
  the host exactly as `ComputeSpansCore` does (the kernel's `sinf` is libm's, through ctypes),
  rows first and then columns, each tap accumulated in the same order with separate float32
  multiply and add (TensorFlow's CPU kernels are built without FMA).

Everything is batched over frames; no per-frame Python loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math

import numpy as np
import torch

JPEG_QUALITY = 95  # tf.image.encode_jpeg's default

# ---- JPEG (libjpeg-turbo, as TensorFlow builds and calls it) -----------------------------------
_STD_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_STD_CHROMINANCE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32
_AAN_SCALES = (  # jddctmgr.c, scaled by 2**14
    16384, 22725, 21407, 19266, 16384, 12873, 8867, 4520,
    22725, 31521, 29692, 26722, 22725, 17855, 12299, 6270,
    21407, 29692, 27969, 25172, 21407, 16819, 11585, 5906,
    19266, 26722, 25172, 22654, 19266, 15137, 10426, 5315,
    16384, 22725, 21407, 19266, 16384, 12873, 8867, 4520,
    12873, 17855, 16819, 15137, 12873, 10114, 6967, 3552,
    8867, 12299, 11585, 10426, 8867, 6967, 4799, 2446,
    4520, 6270, 5906, 5315, 4520, 3552, 2446, 1247,
)


def _fix16(x: float) -> int:
    return int(x * 65536 + 0.5)


def quant_table(basic: tuple[int, ...], quality: int) -> np.ndarray:
    """`jpeg_set_quality(quality, force_baseline=TRUE)`: the scaled table, natural order, [8, 8]."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = np.clip((np.asarray(basic, dtype=np.int64) * scale + 50) // 100, 1, 255)
    return table.reshape(8, 8)


def _reciprocals(qtable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`compute_reciprocal(quantval << 3)` with 16-bit DCTELEM: reciprocal, correction, shift."""
    recip, corr, shift = (np.zeros(64, dtype=np.int64) for _ in range(3))
    for i, q in enumerate(qtable.reshape(-1).tolist()):
        divisor = q << 3
        b = divisor.bit_length() - 1
        r = 16 + b
        fq, fr = divmod(1 << r, divisor)
        c = divisor // 2
        if fr == 0:
            fq >>= 1
            r -= 1
        elif fr <= divisor // 2:
            c += 1
        else:
            fq += 1
        recip[i], corr[i], shift[i] = fq, c, r  # product >>= (r - 16) + 16
    return recip.reshape(8, 8), corr.reshape(8, 8), shift.reshape(8, 8)


def _ifast_multipliers(qtable: np.ndarray) -> np.ndarray:
    """IFAST dequantisation table: DESCALE(quantval * aanscale, 14 - 2)."""
    aan = np.asarray(_AAN_SCALES, dtype=np.int64).reshape(8, 8)
    return (qtable * aan + (1 << 11)) >> 12


@functools.lru_cache(maxsize=8)
def _tables(quality: int) -> dict[str, np.ndarray]:
    out = {}
    for name, basic in (("luma", _STD_LUMINANCE), ("chroma", _STD_CHROMINANCE)):
        q = quant_table(basic, quality)
        recip, corr, shift = _reciprocals(q)
        out[name] = np.stack([recip, corr, shift, _ifast_multipliers(q)])  # [4, 8, 8] int64
    return out


def _descale(x: torch.Tensor, n: int) -> torch.Tensor:
    return (x + (1 << (n - 1))) >> n


def _fdct_pass(x: torch.Tensor, dim: int, first: bool) -> torch.Tensor:
    """One pass of `jpeg_fdct_islow` (CONST_BITS 13, PASS1_BITS 2) along `dim` (size 8)."""
    d = x.unbind(dim)
    tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
    tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
    tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
    tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    if first:
        o0, o4, n = (tmp10 + tmp11) * 4, (tmp10 - tmp11) * 4, 13 - 2
    else:
        o0, o4, n = _descale(tmp10 + tmp11, 2), _descale(tmp10 - tmp11, 2), 13 + 2
    z1 = (tmp12 + tmp13) * 4433
    o2 = _descale(z1 + tmp13 * 6270, n)
    o6 = _descale(z1 + tmp12 * -15137, n)
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * 9633
    tmp4, tmp5, tmp6, tmp7 = tmp4 * 2446, tmp5 * 16819, tmp6 * 25172, tmp7 * 12299
    z1, z2 = z1 * -7373, z2 * -20995
    z3, z4 = z3 * -16069 + z5, z4 * -3196 + z5
    o7 = _descale(tmp4 + z1 + z3, n)
    o5 = _descale(tmp5 + z2 + z4, n)
    o3 = _descale(tmp6 + z2 + z3, n)
    o1 = _descale(tmp7 + z1 + z4, n)
    return torch.stack((o0, o1, o2, o3, o4, o5, o6, o7), dim)


def _w16(x: torch.Tensor) -> torch.Tensor:
    """Wrap int32 values to int16 (SSE2 `paddw`/`psubw`/`psllw`/`pmullw` semantics)."""
    return ((x + 32768) & 0xFFFF) - 32768


def _mulhi(v: torch.Tensor, const: int) -> torch.Tensor:
    """`pmulhw(v << 2, const << 6)`: the SSE2 form of `MULTIPLY(v, const)` (CONST_BITS 8)."""
    return (_w16(v * 4) * (const << 6)) >> 16


def _idct_ifast_pass(x: torch.Tensor, dim: int) -> torch.Tensor:
    """One pass of libjpeg-turbo's `jsimd_idct_ifast_sse2` along `dim` (the code path TensorFlow
    runs on x86-64): `jidctfst.c`'s AA&N butterflies in 16-bit wrapping arithmetic, multiplies
    as `pmulhw` of pre-shifted operands, `2.613 z10` as `-1.613 z10 - z10`."""
    d = x.unbind(dim)
    tmp10, tmp11, tmp13 = _w16(d[0] + d[4]), _w16(d[0] - d[4]), _w16(d[2] + d[6])
    tmp12 = _w16(_mulhi(_w16(d[2] - d[6]), 362) - tmp13)
    tmp0, tmp3 = _w16(tmp10 + tmp13), _w16(tmp10 - tmp13)
    tmp1, tmp2 = _w16(tmp11 + tmp12), _w16(tmp11 - tmp12)
    z12, z10 = _w16(d[1] - d[7]), _w16(d[5] - d[3])
    z11, z13 = _w16(d[1] + d[7]), _w16(d[5] + d[3])
    tmp7 = _w16(z11 + z13)
    tmp11 = _mulhi(_w16(z11 - z13), 362)
    z5 = (_w16(_w16(z10 * 4) + _w16(z12 * 4)) * (473 << 6)) >> 16
    tmp12 = _w16(_w16(_mulhi(z10, -(669 - 256)) - z10) + z5)
    tmp10 = _w16(_mulhi(z12, 277) - z5)
    tmp6 = _w16(tmp12 - tmp7)
    tmp5 = _w16(tmp11 - tmp6)
    tmp4 = _w16(tmp10 + tmp5)
    return torch.stack((_w16(tmp0 + tmp7), _w16(tmp1 + tmp6), _w16(tmp2 + tmp5), _w16(tmp3 - tmp4),
                        _w16(tmp3 + tmp4), _w16(tmp2 - tmp5), _w16(tmp1 - tmp6), _w16(tmp0 - tmp7)), dim)


def _blocks(plane: torch.Tensor) -> torch.Tensor:
    n, h, w = plane.shape
    return plane.reshape(n, h // 8, 8, w // 8, 8).transpose(2, 3)


def _unblocks(blocks: torch.Tensor) -> torch.Tensor:
    n, hb, wb = blocks.shape[:3]
    return blocks.transpose(2, 3).reshape(n, hb * 8, wb * 8)


def _pad_to(plane: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Edge replication (libjpeg's expand_right_edge / expand_bottom_edge)."""
    h, w = plane.shape[-2:]
    if rows > h:
        plane = torch.cat([plane, plane[:, -1:].expand(-1, rows - h, -1)], dim=1)
    if cols > w:
        plane = torch.cat([plane, plane[:, :, -1:].expand(-1, -1, cols - w)], dim=2)
    return plane


def _code_plane(plane: torch.Tensor, table: np.ndarray) -> torch.Tensor:
    """Samples (int32, whole blocks) -> FDCT -> quantise -> dequantise (IFAST) -> IDCT -> samples."""
    t = torch.as_tensor(table, device=plane.device)
    recip, corr, shift, mult = t[0], t[1], t[2], t[3].to(torch.int32)
    coef = _fdct_pass(_fdct_pass(_blocks(plane) - 128, -1, True), -2, False)
    mag = (coef.abs().to(torch.int64) + corr) * recip >> shift
    quant = torch.where(coef < 0, -mag, mag).to(torch.int32)
    ws = _idct_ifast_pass(_w16(quant * mult), -2)  # pass 1: columns (pmullw dequantisation)
    out = _idct_ifast_pass(ws, -1) >> 5  # pass 2: rows, psraw by PASS1_BITS + 3
    return _unblocks(out.clamp(-128, 127) + 128)  # packsswb + CENTERJSAMPLE


def _fancy_upsample(c: torch.Tensor) -> torch.Tensor:
    """`h2v2_fancy_upsample`: [N, h, w] -> [N, 2h, 2w] (edges replicated). libjpeg-turbo only
    uses it when the downsampled width exceeds 2; narrower planes are box-upsampled."""
    n, h, w = c.shape
    if w <= 2:
        return c.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    up = torch.cat([c[:, :1], c[:, :-1]], dim=1)
    down = torch.cat([c[:, 1:], c[:, -1:]], dim=1)
    colsum = torch.stack([3 * c + up, 3 * c + down], dim=2).reshape(n, 2 * h, w)
    left = torch.cat([colsum[:, :, :1], colsum[:, :, :-1]], dim=2)
    right = torch.cat([colsum[:, :, 1:], colsum[:, :, -1:]], dim=2)
    even = (3 * colsum + left + 8) >> 4
    odd = (3 * colsum + right + 7) >> 4
    return torch.stack([even, odd], dim=3).reshape(n, 2 * h, 2 * w)


def jpeg_roundtrip(frames: torch.Tensor, quality: int = JPEG_QUALITY) -> torch.Tensor:
    """uint8 RGB `[N, H, W, 3]` -> uint8 `[N, H, W, 3]`, equal to
    `tf.io.decode_image(tf.image.encode_jpeg(frame, quality=quality))` for every frame."""
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"jpeg_roundtrip: expected uint8 [N, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    n, h, w, _ = frames.shape
    if h < 2 or w < 2:
        raise ValueError(f"jpeg_roundtrip: frames must be at least 2x2, got {h}x{w}")
    tables = _tables(int(quality))
    rgb = frames.to(torch.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    half, offset = 1 << 15, 128 << 16
    y = (_fix16(0.299) * r + _fix16(0.587) * g + _fix16(0.114) * b + half) >> 16
    cb = (-_fix16(0.16874) * r - _fix16(0.33126) * g + _fix16(0.5) * b + offset + half - 1) >> 16
    cr = (_fix16(0.5) * r - _fix16(0.41869) * g - _fix16(0.08131) * b + offset + half - 1) >> 16

    # Luma: whole 8x8 blocks by edge replication.
    hb, wb = -(-h // 8), -(-w // 8)
    y = _code_plane(_pad_to(y, 8 * hb, 8 * wb), tables["luma"])[:, :h, :w]

    # Chroma: rows to an even count, columns to 2 x (whole blocks), 2x2 average with bias 1,2,1,2..
    ch, cw = -(-h // 2), -(-w // 2)
    chb, cwb = -(-ch // 8), -(-cw // 8)
    chroma = _pad_to(torch.stack([cb, cr], 1).reshape(2 * n, h, w), 2 * ch, 16 * cwb)
    quad = chroma.reshape(2 * n, ch, 2, 8 * cwb, 2).sum(dim=(2, 4))
    bias = torch.tensor([1, 2], dtype=torch.int32, device=frames.device).repeat(4 * cwb)
    small = _pad_to((quad + bias) >> 2, 8 * chb, 8 * cwb)
    small = _code_plane(small, tables["chroma"])[:, :ch, :cw]
    cb, cr = _fancy_upsample(small)[:, :h, :w].reshape(n, 2, h, w).unbind(1)

    # YCbCr -> RGB (jdcolor.c tables), range-limited.
    cb, cr = cb - 128, cr - 128
    red = y + ((_fix16(1.40200) * cr + half) >> 16)
    green = y + ((-_fix16(0.34414) * cb + half - _fix16(0.71414) * cr) >> 16)
    blue = y + ((_fix16(1.77200) * cb + half) >> 16)
    return torch.stack([red, green, blue], dim=-1).clamp(0, 255).to(torch.uint8)


# ---- lanczos3 with antialias (TensorFlow's ScaleAndTranslate) -----------------------------------
def _libm_sinf():
    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        fn = libm.sinf
        fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
        return lambda x: np.float32(fn(float(x)))
    except (OSError, AttributeError):  # no libm: the correctly rounded value (equal almost always)
        return lambda x: np.float32(math.sin(float(x)))


_sinf = _libm_sinf()
_F = np.float32


def _lanczos(x: np.float32, radius: np.float32) -> np.float32:
    """sampling_kernels.h `LanczosKernelFunc` in float32 (kPI = 3.14159265359f)."""
    kpi = _F(3.14159265359)
    x = abs(x)
    if x > radius:
        return _F(0.0)
    if float(x) <= 1e-3:
        return _F(1.0)
    return radius * _sinf(kpi * x) * _sinf(kpi * x / radius) / (kpi * kpi * x * x)


@functools.lru_cache(maxsize=32)
def scale_and_translate_spans(input_size: int, output_size: int, radius: float = 3.0,
                              antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`ComputeSpansCore` for `tf.image.resize(method="lanczos3", antialias=True)` along one axis:
    (starts int64 [output_size], weights float32 [output_size, span_size]); zero-padded spans."""
    with np.errstate(all="ignore"):
        rad = _F(radius)
        scale = _F(output_size) / _F(input_size)
        inv_scale = _F(1.0 / float(scale))
        inv_translate = -inv_scale * _F(0.0)
        kernel_scale = max(inv_scale, _F(1.0)) if antialias else _F(1.0)
        span_size = min(2 * int(math.ceil(rad * kernel_scale)) + 1, input_size)
        one_over_kernel_scale = _F(1.0) / kernel_scale
        starts = np.zeros(output_size, dtype=np.int64)
        weights = np.zeros((output_size, span_size), dtype=np.float32)
        for x in range(output_size):
            sample_f = (_F(x) + _F(0.5)) * inv_scale + inv_translate
            if sample_f < 0 or sample_f > input_size:
                continue
            start = int(math.ceil(sample_f - rad * kernel_scale - _F(0.5)))
            end = int(math.floor(sample_f + rad * kernel_scale - _F(0.5)))
            start = min(max(start, 0), input_size - 1)
            end = min(max(end, 0), input_size - 1) + 1
            taps = [_lanczos(abs((_F(s) + _F(0.5) - sample_f) * one_over_kernel_scale), rad) for s in range(start, end)]
            total = _F(0.0)
            for t in taps:
                total = total + t
            if abs(total) >= 1000.0 * np.finfo(np.float32).tiny:
                inv_total = _F(1.0) / total
                weights[x, : len(taps)] = [t * inv_total for t in taps]
            starts[x] = start
    return starts, weights


def _gather_spans(x: torch.Tensor, dim: int, starts: np.ndarray, weights: np.ndarray) -> torch.Tensor:
    """out[..., o, ...] = sum_i w[o, i] * x[..., starts[o] + i, ...], accumulated tap by tap."""
    size = x.shape[dim]
    start = torch.as_tensor(starts, device=x.device)
    w = torch.as_tensor(weights, device=x.device)
    shape = [1] * x.dim()
    shape[dim] = w.shape[0]
    acc = None
    for i in range(w.shape[1]):
        term = x.index_select(dim, (start + i).clamp(max=size - 1)) * w[:, i].reshape(shape)
        acc = term if acc is None else acc + term
    return acc


def resize_lanczos3(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`tf.image.resize(frames, size, method="lanczos3", antialias=True)` of `[N, H, W, C]`
    (any real dtype) -> float32 `[N, size[0], size[1], C]`, rows first, then columns, as TF."""
    n, h, w, c = frames.shape
    x = frames.to(torch.float32)
    x = _gather_spans(x, 1, *scale_and_translate_spans(h, int(size[0])))
    return _gather_spans(x, 2, *scale_and_translate_spans(w, int(size[1])))


def simplevla_resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """`libero_utils.resize_image` for a batch: uint8 `[N, H, W, 3]` -> uint8 `[N, size, size, 3]`
    (JPEG round trip, lanczos3 with antialias, round half to even, clip)."""
    x = resize_lanczos3(jpeg_roundtrip(frames), (size, size))
    return x.round().clamp(0.0, 255.0).to(torch.uint8)
