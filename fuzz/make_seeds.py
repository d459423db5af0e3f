#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ (small valid and slightly broken inputs).

Plain Python (struct, gzip, json): no nibabel or torch needed. Run from anywhere:
    python3 fuzz/make_seeds.py
"""
import gzip
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def nifti1(dims, datatype, bitpix, data, vox_offset=352.0, endian="<", magic=b"n+1\0",
           slope=0.0, inter=0.0, pixdim=(1.0, 1.0, 1.0, 1.0), qform=1, sform=1):
    h = bytearray(348)
    struct.pack_into(endian + "i", h, 0, 348)
    dim = [len(dims)] + list(dims) + [1] * (7 - len(dims))
    struct.pack_into(endian + "8h", h, 40, *dim)
    struct.pack_into(endian + "hh", h, 70, datatype, bitpix)
    struct.pack_into(endian + "8f", h, 76, *([1.0] + list(pixdim[:3]) + [1, 1, 1, 1]))
    struct.pack_into(endian + "fff", h, 108, vox_offset, slope, inter)
    struct.pack_into(endian + "hh", h, 252, qform, sform)
    struct.pack_into(endian + "6f", h, 256, 0, 0, 0, -1.5, 2.0, 3.25)
    rows = [[pixdim[0], 0, 0, -1.5], [0, pixdim[1], 0, 2.0], [0, 0, pixdim[2], 3.25]]
    for r, row in enumerate(rows):
        struct.pack_into(endian + "4f", h, 280 + 16 * r, *row)
    h[344:348] = magic
    pad = int(vox_offset) - 348
    return bytes(h) + b"\0" * max(pad, 0) + data


def nifti2(dims, datatype, bitpix, data, endian="<"):
    h = bytearray(540)
    struct.pack_into(endian + "i", h, 0, 540)
    h[4:12] = b"n+2\0\r\n\x1a\n"
    struct.pack_into(endian + "hh", h, 12, datatype, bitpix)
    dim = [len(dims)] + list(dims) + [1] * (7 - len(dims))
    struct.pack_into(endian + "8q", h, 16, *dim)
    struct.pack_into(endian + "8d", h, 104, 1.0, 1.0, 1.0, 1.0, 1, 1, 1, 1)
    struct.pack_into(endian + "qdd", h, 168, 544, 0.0, 0.0)
    struct.pack_into(endian + "ii", h, 344, 1, 0)
    return bytes(h) + b"\0" * 4 + data


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def nifti_seeds():
    f32 = struct.pack("<64f", *[i * 0.5 - 3 for i in range(64)])
    write("nifti", "f32_4x4x4.nii", nifti1((4, 4, 4), 16, 32, f32))
    write("nifti", "f32_4x4x4.nii.gz", gzip.compress(nifti1((4, 4, 4), 16, 32, f32), mtime=0))
    write("nifti", "u8_3x2x5.nii", nifti1((3, 2, 5), 2, 8, bytes(range(30))))
    write("nifti", "i16_be_2x3x2.nii",
          nifti1((2, 3, 2), 4, 16, struct.pack(">12h", *range(-6, 6)), endian=">"))
    write("nifti", "u16_scaled_2x2x2.nii",
          nifti1((2, 2, 2), 512, 16, struct.pack("<8H", *range(8)), slope=2.0, inter=-1.0))
    write("nifti", "i32_4d_2x2x2x1.nii",
          nifti1((2, 2, 2, 1), 8, 32, struct.pack("<8i", *range(8))))
    write("nifti", "f64_2x2x2.nii", nifti1((2, 2, 2), 64, 64, struct.pack("<8d", *range(8))))
    write("nifti", "i8_extension_2x2x2.nii",
          nifti1((2, 2, 2), 256, 8, bytes(8), vox_offset=368.0)[:348]
          + b"\1\0\0\0" + struct.pack("<ii", 16, 4) + b"abcdefgh" + bytes(8))
    write("nifti", "nifti2_f32_2x2x2.nii", nifti2((2, 2, 2), 16, 32, struct.pack("<8f", *range(8))))
    # Slightly broken ones.
    write("nifti", "truncated_data.nii", nifti1((4, 4, 4), 16, 32, f32)[:500])
    write("nifti", "nan_voxel.nii", nifti1((2, 1, 1), 16, 32, struct.pack("<2f", 1, float("nan"))))
    write("nifti", "bad_magic.nii", nifti1((2, 2, 2), 2, 8, bytes(8), magic=b"ni1\0"))
    write("nifti", "truncated.nii.gz", gzip.compress(nifti1((4, 4, 4), 16, 32, f32), mtime=0)[:-6])
    write("nifti", "two_volumes.nii", nifti1((2, 2, 2, 2), 2, 8, bytes(16)))


def safetensors(tensors, metadata=None, pad=True):
    header, blob = {}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def safetensors_seeds():
    # The fuzz model: Sequential(Conv3d(2, 4, 3), GroupNorm(2, 4), ReLU) (see fuzz_safetensors.cpp).
    conv_w = struct.pack("<216f", *[(i % 7) * 0.1 for i in range(216)])
    model = {"0.weight": ("F32", [4, 2, 3, 3, 3], conv_w),
             "0.bias": ("F32", [4], struct.pack("<4f", 1, 2, 3, 4)),
             "1.weight": ("F32", [4], struct.pack("<4f", 1, 1, 1, 1)),
             "1.bias": ("F32", [4], struct.pack("<4f", 0, 0, 0, 0))}
    write("safetensors", "model_f32.safetensors", safetensors(model, {"format": "pt"}))
    prefixed = {"model." + k: v for k, v in model.items()}
    prefixed["step"] = ("I64", [], struct.pack("<q", 7))
    write("safetensors", "checkpoint_prefixed.safetensors", safetensors(prefixed, {"epoch": "3"}))
    write("safetensors", "model_f16_bf16.safetensors", safetensors({
        "0.bias": ("F16", [4], struct.pack("<4e", 1, 2, 3, 4)),
        "1.weight": ("BF16", [2, 2], b"\x80\x3f" * 4),
        "1.bias": ("F64", [4], struct.pack("<4d", 0, 1, 2, 3))}))
    write("safetensors", "dtypes.safetensors", safetensors({
        "a": ("U8", [3], b"\1\2\3"), "b": ("BOOL", [1], b"\1"), "c": ("I32", [2], bytes(8)),
        "d": ("U16", [1], bytes(2)), "e": ("I8", [0], b""), "f": ("U64", [1, 1], bytes(8))}))
    write("safetensors", "empty_header.safetensors", struct.pack("<Q", 2) + b"{}")
    # Slightly broken ones.
    write("safetensors", "gap.safetensors", struct.pack("<Q", 64)
          + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'.ljust(64) + bytes(8))
    write("safetensors", "truncated.safetensors", safetensors(model)[:-10])
    write("safetensors", "shape_mismatch.safetensors",
          safetensors({"0.bias": ("F32", [5], struct.pack("<4f", 1, 2, 3, 4))}))
    write("safetensors", "huge_length.safetensors", struct.pack("<Q", 1 << 62) + b"{}")


def config_seeds():
    write("config", "unet_preset.json", '{"preset": "tiny"}')
    write("config", "unet_full.json", json.dumps({
        "in_channels": 4, "out_channels": 3, "widths": [8, 16, 32], "expand_ratio": 2,
        "blocks_per_level": 1, "decoder_blocks": 1, "num_groups": 2, "block": "mbconv",
        "reversible": True, "input_size": [16, 16, 16]}))
    write("config", "run_small.json", json.dumps({
        "model": {"preset": "tiny"}, "epochs": 2, "batch_size": 1, "learning_rate": 0.001,
        "milestones": [1], "loss": "bce_dice", "patch_size": [16, 16, 16],
        "sampling": "patch", "augment": {"enabled": False, "scale": 0.2}, "seed": 3}))
    write("config", "run_bad_types.json",
          '{"epochs": "ten", "model": {"widths": [3]}, "augment": [1]}')
    write("config", "set_epochs.txt", "epochs=10")
    write("config", "set_model.txt", "model.expand_ratio=4")
    write("config", "set_array.txt", "patch_size=[32,32,32]")
    write("config", "set_augment.txt", "augment.rotation_degrees=15.5")
    write("config", "set_unknown.txt", "model.colour=blue")
    write("config", "broken.json", '{"preset": "tiny", "widths": [8, 16,')


def brats_seeds():
    def case(folder, cid, sep, suffixes, ext=".nii.gz"):
        return "".join(f"{folder}{cid}/{cid}{sep}{s}{ext}\n" for s in suffixes)
    y2020 = ["t1", "t1ce", "t2", "flair", "seg"]
    y2023 = ["t1n", "t1c", "t2w", "t2f", "seg"]
    write("brats", "2020.txt", "1" + case("", "BraTS20_Training_001", "_", y2020)
          + case("", "BraTS20_Training_002", "_", y2020, ".nii") + "name_mapping.csv\n")
    write("brats", "2019_hgg_lgg.txt", "0" + case("HGG/", "BraTS19_A_1", "_", y2020)
          + case("LGG/", "BraTS19_B_1", "_", y2020[:4]))
    write("brats", "2023.txt", "0" + case("", "BraTS-GLI-00000-000", "-", y2023))
    write("brats", "root_is_case.txt", "4BraTS2021_00000/\n"
          + case("", "BraTS2021_00000", "_", y2020))
    write("brats", "alias.txt", "3" + case("", "BraTS20_Training_355", "_", y2020[:4])
          + "BraTS20_Training_355/W39_1998.09.19_Segm.nii\n")
    # Slightly broken ones.
    write("brats", "missing_modality.txt", "0" + case("", "BraTS20_Training_003", "_", y2020[1:]))
    write("brats", "both_nii_and_gz.txt", "0" + case("", "C", "_", y2020)
          + "C/C_t1.nii\n")
    write("brats", "duplicate_ids.txt", "0" + case("a/", "D", "_", y2020) + case("b/", "D", "_", y2020))
    write("brats", "symlinks.txt", "0" + case("", "E", "_", y2020[1:]) + "E/E_t1.nii.gz\tE_t2.nii.gz\n"
          + "link\tE\n.hidden/\n")
    write("brats", "empty.txt", "1")


if __name__ == "__main__":
    shutil.rmtree(CORPUS, ignore_errors=True)
    nifti_seeds()
    safetensors_seeds()
    config_seeds()
    brats_seeds()
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print(f"{target}: {len(files)} seeds, {size} bytes")
