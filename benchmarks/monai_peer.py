#!/usr/bin/env python3
"""A PyTorch peer for revox-brats: a well-known MONAI model trained on the same BraTS cases.

Setup (Debian's PyTorch 1.13 and numpy 1.24 in /usr/bin/python3; MONAI 1.3.2 supports
torch >= 1.9, so it is installed without pulling another torch):

  /usr/bin/python3 -m venv --system-site-packages /work/venv-peer
  /work/venv-peer/bin/pip install --no-deps monai==1.3.2 nibabel packaging
  # Debian's torch links the reference (netlib) BLAS; PyTorch 1.13 sends 3D convolutions of
  # batch 1 with C x D x H < 20480 (every convolution of a 32^3-patch U-Net) to its im2col +
  # BLAS path, about 6x slower with netlib than with OpenBLAS. Give the peer OpenBLAS for
  # this process only (nothing installed system-wide):
  mkdir -p /work/peer-libs && cd /work/peer-libs && apt-get download libopenblas0-pthread \
      && dpkg -x libopenblas0-pthread_*.deb root && cd -
  export LD_LIBRARY_PATH=/work/peer-libs/root/usr/lib/x86_64-linux-gnu/openblas-pthread
The script prints which BLAS torch loaded and warns when it is the reference one.

Run (after `revox-brats train --data RAW --out RUN ...`, which writes RUN/split.json,
RUN/config.json and RUN/holdout/):

  /work/venv-peer/bin/python benchmarks/monai_peer.py --data RAW --run RUN \\
      --out PEER_OUT --budget-s 600 --threads 2
  revox-brats evaluate --pred PEER_OUT --data RUN/holdout

What is the same as the revox run it is compared with:
  - the cases and the split: RUN/split.json's "train" ids train, its "holdout" ids are only
    predicted after training (nothing of them is read before);
  - the inputs: t1, t1ce, t2, flair, each z-scored over its non-zero (brain) voxels;
  - the targets: three sigmoid channels WT, TC, ET; the loss: soft Dice (config "dice") or
    Dice + BCE (config "bce_dice"), from RUN/config.json unless --loss is given;
  - patch size, batch size, learning rate (Adam), share of tumour-centred patches and seed
    from RUN/config.json unless given here; the thread count (--threads, default the run's);
  - the output: <id>.nii.gz uint8 labels on the case's grid with its geometry, nested as
    revox writes them (ET -> 4 (3 for BraTS 2023 labels), else TC -> 1, else WT -> 2).
What differs, by design: the network (MONAI's SegResNet or DynUNet instead of revox's
reversible U-Net), augmentation (random flips along each axis only), the learning-rate
schedule (polynomial decay over the wall-clock budget: lr * (1 - t / budget)^0.9, since the
number of steps a budget allows is not known in advance), and inference (MONAI's
sliding_window_inference with Gaussian weighting, overlap 0.5, the patch size as window).

The budget (--budget-s) counts the training steps only: reading the cases before and
predicting the hold-out cases after are timed and printed separately.

Model choice (--model, default dynunet): DynUNet is nnU-Net's U-Net (two 3x3x3 convolutions
with instance norm per level, strided convolutions down, transposed convolutions up); with
filters 16, 32, 64, 128 it has revox "small"'s widths and 1.4 M parameters. SegResNet
(Myronenko's BraTS 2018 winner, MONAI's BraTS tutorial model) with init_filters 16 has the
same widths but more residual blocks (4.7 M parameters), and one training step on a 32^3
patch took 2.2x as long as DynUNet's (9.0 s vs 4.2 s on 2 threads of this project's 2-core
machine while it was shared; both with OpenBLAS). At a budget of minutes of CPU the model that
takes more steps wins, so DynUNet is the default; --model segresnet runs the other one.
"""

import argparse
import json
import os
import random
import sys
import time

SETUP = """setup:
  /usr/bin/python3 -m venv --system-site-packages /work/venv-peer
  /work/venv-peer/bin/pip install --no-deps monai==1.3.2 nibabel packaging
  mkdir -p /work/peer-libs && cd /work/peer-libs && apt-get download libopenblas0-pthread \\
      && dpkg -x libopenblas0-pthread_*.deb root && cd -
  export LD_LIBRARY_PATH=/work/peer-libs/root/usr/lib/x86_64-linux-gnu/openblas-pthread
  (Debian's torch otherwise uses the reference BLAS: its small 3D convolutions ~6x slower)
then:
  /work/venv-peer/bin/python benchmarks/monai_peer.py --data RAW --run RUN --out PEER_OUT \\
      --budget-s 600 --threads 2
  revox-brats evaluate --pred PEER_OUT --data RUN/holdout"""

MODALITIES_2017 = ("t1", "t1ce", "t2", "flair")
MODALITIES_2023 = ("t1n", "t1c", "t2w", "t2f")


def loaded_blas():
    """The BLAS library this process has mapped (after importing torch), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return None
    return ", ".join(sorted(paths)) or None


# ---- cases on disk -------------------------------------------------------------------------

def is_nifti(name):
    return name.endswith(".nii") or name.endswith(".nii.gz")


def find_case_folders(root, depth=0):
    """{case id: folder}: folders holding NIfTI files, searched up to three levels down (as
    revox's discover_brats_cases); a root that is itself a case folder gives that case."""
    root = os.path.realpath(root)
    found = {}
    entries = sorted(os.listdir(root))
    if any(is_nifti(e) and os.path.isfile(os.path.join(root, e)) for e in entries):
        found[os.path.basename(root)] = root
        return found
    if depth >= 3:
        return found
    for entry in entries:
        path = os.path.join(root, entry)
        if os.path.isdir(path):
            found.update(find_case_folders(path, depth + 1))
    return found


def volume_path(folder, case_id, suffix):
    for separator in ("_", "-"):
        for extension in (".nii.gz", ".nii"):
            path = os.path.join(folder, case_id + separator + suffix + extension)
            if os.path.isfile(path):
                return path
    return None


def case_files(folder, case_id):
    """The four modality files (t1, t1ce, t2, flair order), the segmentation (or None) and the
    naming ('2017' or '2023')."""
    for naming, suffixes in (("2017", MODALITIES_2017), ("2023", MODALITIES_2023)):
        paths = [volume_path(folder, case_id, s) for s in suffixes]
        if all(paths):
            return paths, volume_path(folder, case_id, "seg"), naming
    sys.exit(f"monai_peer: case {case_id} in '{folder}' lacks one of the modality files "
             f"{case_id}_{{t1,t1ce,t2,flair}}.nii[.gz] (or the 2023 names)")


def load_case(nib, np, folder, case_id, with_labels):
    """image (4, X, Y, Z) float32 z-scored over non-zero voxels per modality; labels (X, Y, Z)
    uint8 or None; the enhancing label (4 or 3); the reference image for writing."""
    paths, seg_path, naming = case_files(folder, case_id)
    images = [nib.load(p) for p in paths]
    image = np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in images])
    for c in range(image.shape[0]):
        channel = image[c]
        brain = channel != 0
        if brain.any():
            values = channel[brain].astype(np.float64)
            std = values.std()
            channel[brain] = ((values - values.mean()) / (std if std > 0 else 1.0)).astype(
                np.float32)
    labels = None
    enhancing = 4 if naming == "2017" else 3
    if with_labels:
        if seg_path is None:
            sys.exit(f"monai_peer: training case {case_id} in '{folder}' has no segmentation")
        labels = np.rint(np.asarray(nib.load(seg_path).dataobj)).astype(np.uint8)
        if (labels == 3).any():
            enhancing = 3
        elif (labels == 4).any():
            enhancing = 4
    return image, labels, enhancing, images[0]


def region_targets(np, labels, enhancing):
    """(3, X, Y, Z) float32: WT, TC, ET."""
    return np.stack([labels > 0, (labels == 1) | (labels == enhancing),
                     labels == enhancing]).astype(np.float32)


def labels_from_probabilities(np, probabilities, enhancing):
    """Nested as revox's labels_from_regions at 0.5."""
    wt, tc, et = (probabilities[r] > 0.5 for r in range(3))
    labels = np.zeros(wt.shape, dtype=np.uint8)
    labels[wt] = 2
    labels[tc] = 1
    labels[et] = enhancing
    return labels


def region_dice(np, predicted, truth, enhancing):
    dice = []
    for region in range(3):
        if region == 0:
            p, t = predicted > 0, truth > 0
        elif region == 1:
            p = (predicted == 1) | (predicted == enhancing)
            t = (truth == 1) | (truth == enhancing)
        else:
            p, t = predicted == enhancing, truth == enhancing
        denominator = p.sum() + t.sum()
        dice.append(1.0 if denominator == 0 else 2.0 * (p & t).sum() / denominator)
    return dice


# ---- training ------------------------------------------------------------------------------

def random_patch(np, rng, image, targets, patch, tumour_probability):
    """A patch (as revox samples): with probability tumour_probability centred on a random WT
    voxel (shifted to lie inside the volume), else anywhere; zero padding where the volume is
    smaller than the patch."""
    shape = image.shape[1:]
    pad = [max(0, p - s) for p, s in zip(patch, shape)]
    if any(pad):
        widths = [(0, 0)] + [(q // 2, q - q // 2) for q in pad]
        image = np.pad(image, widths)
        targets = np.pad(targets, widths)
        shape = image.shape[1:]
    wt = np.flatnonzero(targets[0])
    if wt.size and rng.random() < tumour_probability:
        centre = np.unravel_index(wt[rng.integers(wt.size)], shape)
        start = [min(max(c - p // 2, 0), s - p) for c, p, s in zip(centre, patch, shape)]
    else:
        start = [int(rng.integers(s - p + 1)) for p, s in zip(patch, shape)]
    window = tuple(slice(b, b + p) for b, p in zip(start, patch))
    return image[(slice(None),) + window], targets[(slice(None),) + window]


def build_model(name, init_filters):
    from monai.networks.nets import DynUNet, SegResNet
    if name == "segresnet":
        return SegResNet(spatial_dims=3, in_channels=4, out_channels=3,
                         init_filters=init_filters, blocks_down=(1, 2, 2, 4),
                         blocks_up=(1, 1, 1), dropout_prob=None)
    filters = [init_filters * 2 ** i for i in range(4)]
    return DynUNet(spatial_dims=3, in_channels=4, out_channels=3, kernel_size=[3, 3, 3, 3],
                   strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2], filters=filters,
                   norm_name="instance", deep_supervision=False, res_block=False)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Trains on RUN/split.json's training cases for "
        "a wall-clock budget and writes OUT/<id>.nii.gz for its hold-out cases.",
        epilog=SETUP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the raw BraTS folder the run trained on")
    parser.add_argument("--run", required=True,
                        help="a revox-brats run folder: its split.json (and config.json for "
                        "the defaults of the options below)")
    parser.add_argument("--out", required=True, help="folder for <case id>.nii.gz predictions")
    parser.add_argument("--test-data",
                        help="predict every case of this folder (a test set kept apart) "
                             "instead of the run's hold-out cases")
    parser.add_argument("--budget-s", type=float, required=True,
                        help="wall-clock seconds of training steps")
    parser.add_argument("--threads", type=int, help="torch threads (default: the run's)")
    parser.add_argument("--model", choices=("dynunet", "segresnet"), default="dynunet")
    parser.add_argument("--init-filters", type=int, default=16,
                        help="widths init, 2x, 4x, 8x (16: revox small's 16, 32, 64, 128)")
    parser.add_argument("--patch-size", type=int, nargs=3, metavar=("D", "H", "W"),
                        help="training patch and inference window (default: the run's)")
    parser.add_argument("--batch-size", type=int, help="default: the run's")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: the run's)")
    parser.add_argument("--loss", choices=("dice", "bce_dice"), help="default: the run's")
    parser.add_argument("--tumour-probability", type=float,
                        help="share of patches centred on a tumour voxel (default: the run's)")
    parser.add_argument("--schedule", choices=("poly", "constant"), default="poly",
                        help="poly: lr * (1 - elapsed / budget)^0.9")
    parser.add_argument("--no-flip", action="store_true", help="no random flips")
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap")
    parser.add_argument("--sw-batch-size", type=int, default=4,
                        help="windows per forward pass at inference (batches above 1 take "
                        "PyTorch's oneDNN convolutions)")
    parser.add_argument("--seed", type=int, help="default: the run's")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    split_path = os.path.join(args.run, "split.json")
    if not os.path.isfile(split_path):
        sys.exit(f"monai_peer: split file '{split_path}' does not exist (revox-brats train "
                 "writes it into its run folder)")
    with open(split_path) as f:
        split = json.load(f)
    config = {}
    config_path = os.path.join(args.run, "config.json")
    if os.path.isfile(config_path):
        with open(config_path) as f:
            config = json.load(f)
    patch = args.patch_size or config.get("patch_size", [32, 32, 32])
    batch_size = args.batch_size or config.get("batch_size", 1)
    lr = args.lr or config.get("learning_rate", 1e-3)
    loss_name = args.loss or config.get("loss", "dice")
    tumour_probability = (args.tumour_probability if args.tumour_probability is not None
                          else config.get("tumor_probability", 0.7))
    threads = args.threads or config.get("threads", 2)
    seed = args.seed if args.seed is not None else config.get("seed", 1)
    # revox's patch_size is (D, H, W); nibabel arrays are (x, y, z) = (W, H, D).
    patch_xyz = list(reversed(patch))

    import nibabel as nib
    import numpy as np
    import torch
    import monai
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss, DiceLoss

    blas = loaded_blas()
    if blas and "/blas/libblas.so" in blas:
        print(f"monai_peer: warning: torch uses the reference BLAS ({blas}); its batch-1 3D "
              "convolutions run several times slower than with OpenBLAS (see --help)",
              flush=True)
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(seed)
    random.seed(seed)
    rng = np.random.default_rng(seed)

    folders = find_case_folders(args.data)
    for role in ("train", "holdout"):
        missing = [i for i in split.get(role, []) if i not in folders]
        if missing:
            sys.exit(f"monai_peer: split file '{split_path}': {len(missing)} {role} case(s) "
                     f"are not in '{args.data}': {', '.join(missing[:8])}")
    train_ids, holdout_ids = split["train"], split["holdout"]
    predict_folders = folders
    if args.test_data:  # a test set kept apart: predict all of it instead of the hold-out
        predict_folders = find_case_folders(args.test_data)
        if not predict_folders:
            sys.exit(f"monai_peer: no cases in '{args.test_data}'")
        holdout_ids = sorted(predict_folders)
    os.makedirs(args.out, exist_ok=True)
    existing = [i for i in holdout_ids if os.path.exists(os.path.join(args.out, i + ".nii.gz"))]
    if existing and not args.overwrite:
        sys.exit(f"monai_peer: {len(existing)} prediction(s) already exist in '{args.out}' "
                 "(pass --overwrite)")

    print(f"monai_peer: MONAI {monai.__version__}, torch {torch.__version__}, {threads} "
          f"thread(s); {args.model} (init_filters {args.init_filters}); {len(train_ids)} "
          f"training / {len(holdout_ids)} hold-out cases from {split_path}; patch "
          f"{patch} (D, H, W), batch {batch_size}, Adam lr {lr} ({args.schedule}), loss "
          f"{loss_name}, tumour patches {tumour_probability}, flips "
          f"{'off' if args.no_flip else 'on'}, seed {seed}, budget {args.budget_s:g} s; "
          f"BLAS {blas}", flush=True)

    start = time.perf_counter()
    train = []
    for case_id in train_ids:
        image, labels, enhancing, _ = load_case(nib, np, folders[case_id], case_id, True)
        train.append((image, region_targets(np, labels, enhancing)))
    load_seconds = time.perf_counter() - start
    print(f"monai_peer: read {len(train)} training cases in {load_seconds:.1f} s", flush=True)

    model = build_model(args.model, args.init_filters)
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if loss_name == "dice":
        loss_function = DiceLoss(sigmoid=True)
    else:
        loss_function = DiceCELoss(sigmoid=True)

    model.train()
    steps = 0
    losses = []
    order = []
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < args.budget_s:
        images, targets = [], []
        for _ in range(batch_size):
            if not order:  # a pass over the training cases in a fresh random order
                order = list(rng.permutation(len(train)))
            image, target = train[order.pop()]
            x, y = random_patch(np, rng, image, target, patch_xyz, tumour_probability)
            if not args.no_flip:
                for axis in range(1, 4):
                    if rng.random() < 0.5:
                        x, y = np.flip(x, axis), np.flip(y, axis)
            images.append(np.ascontiguousarray(x))
            targets.append(np.ascontiguousarray(y))
        if args.schedule == "poly":
            for group in optimizer.param_groups:
                group["lr"] = lr * (1.0 - elapsed / args.budget_s) ** 0.9
        optimizer.zero_grad()
        loss = loss_function(model(torch.from_numpy(np.stack(images))),
                             torch.from_numpy(np.stack(targets)))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        steps += 1
        elapsed = time.perf_counter() - start
        if steps % 50 == 0:
            print(f"step {steps}  loss {np.mean(losses[-50:]):.4f}  {elapsed:.0f} s", flush=True)
    train_seconds = elapsed
    print(f"monai_peer: {steps} steps in {train_seconds:.1f} s ({train_seconds / steps:.3f} s "
          f"per step), last 50 steps' loss {np.mean(losses[-50:]):.4f}, {parameters} "
          "parameters", flush=True)

    model.eval()
    start = time.perf_counter()
    dice_sum, scored, per_case = np.zeros(3), 0, {}
    for case_id in holdout_ids:
        image, labels, enhancing, reference = load_case(
            nib, np, predict_folders[case_id], case_id,
            case_files(predict_folders[case_id], case_id)[1] is not None)
        with torch.no_grad():
            logits = sliding_window_inference(
                torch.from_numpy(image[None]), roi_size=patch_xyz, sw_batch_size=args.sw_batch_size,
                predictor=model, overlap=args.overlap, mode="gaussian")
        probabilities = torch.sigmoid(logits)[0].numpy()
        predicted = labels_from_probabilities(np, probabilities, enhancing)
        header = reference.header.copy()
        header.set_data_dtype(np.uint8)
        header["scl_slope"], header["scl_inter"] = 1.0, 0.0
        out_image = nib.Nifti1Image(predicted, reference.affine, header)
        out_image.set_qform(reference.get_qform(), int(reference.header["qform_code"]))
        out_image.set_sform(reference.get_sform(), int(reference.header["sform_code"]))
        nib.save(out_image, os.path.join(args.out, case_id + ".nii.gz"))
        line = f"[{len(per_case) + 1}/{len(holdout_ids)}] {case_id}"
        if labels is not None:
            dice = region_dice(np, predicted, labels, enhancing)
            dice_sum += dice
            scored += 1
            per_case[case_id] = dice
            line += f": Dice WT {dice[0]:.4f} TC {dice[1]:.4f} ET {dice[2]:.4f}"
        else:
            per_case[case_id] = None
        print(line, flush=True)
    predict_seconds = time.perf_counter() - start
    summary = {
        "model": args.model, "init_filters": args.init_filters, "parameters": parameters,
        "monai": monai.__version__, "torch": torch.__version__, "threads": threads,
        "patch_size": patch, "batch_size": batch_size, "learning_rate": lr,
        "schedule": args.schedule, "loss": loss_name, "flips": not args.no_flip,
        "tumour_probability": tumour_probability, "seed": seed, "budget_s": args.budget_s,
        "steps": steps, "train_seconds": train_seconds, "load_seconds": load_seconds,
        "predict_seconds": predict_seconds, "split": split_path, "blas": blas,
        "dice": per_case,
    }
    if scored:
        mean = dice_sum / scored
        summary["mean_dice"] = list(mean)
        scored_data = args.test_data or os.path.join(args.run, "holdout")
        print(f"monai_peer: {scored} {'test' if args.test_data else 'hold-out'} case(s), "
              f"predicted in {predict_seconds:.1f} s: "
              f"Dice WT {mean[0]:.4f} TC {mean[1]:.4f} ET {mean[2]:.4f} mean "
              f"{mean.mean():.4f} (score with: revox-brats evaluate --pred {args.out} --data "
              f"{scored_data})")
    with open(os.path.join(args.out, "peer.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
