#!/usr/bin/env bash
# The recipe ablation of docs/results.md ("Segmentation quality on the realistic phantom"):
# trains the small U-Net once per recipe variant on the same realistic-phantom cases and the
# same split, predicts the trainer's hold-out cases with each run's final model (latest,
# not the best-on-hold-out one, and without post-processing, so no choice is made on the
# cases being scored), scores them with `revox-brats evaluate`, and writes one table row per
# variant: Dice per region, their mean and the training wall time.
#
#   bash benchmarks/recipe_ablation.sh OUT_DIR [VARIANTS_FILE]
#
# VARIANTS_FILE: one variant per line, "name | train arguments" ('#' starts a comment), e.g.
#   default      | --preset small
#   no-augment   | --preset small --set augment.enabled=false
# Without it, the variants below are run. Environment: BIN (default build/examples/brats/
# revox-brats), DATA (default OUT_DIR/data: generated if missing with phantom --mode realistic
# --cases $CASES --size $SIZE --seed $DATA_SEED), CASES (40), SIZE ("96 96 64"), DATA_SEED (1),
# SEEDS (training seeds, default "1"), THREADS (2). A variant whose run folder already has
# scores is not run again (delete it to rerun), so an interrupted ablation continues.
# Writes OUT_DIR/table.md and OUT_DIR/table.csv; prints the table.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -ge 1 ] || { sed -n 2,20p "$0" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
variants_file=${2:-}
bin=${BIN:-$root/build/examples/brats/revox-brats}
data=${DATA:-$out/data}
cases=${CASES:-40}
size=${SIZE:-"96 96 64"}
data_seed=${DATA_SEED:-1}
seeds=${SEEDS:-1}
threads=${THREADS:-2}
[ -x "$bin" ] || { echo "recipe_ablation: $bin not found; build revox-brats or set BIN" >&2; exit 1; }

if [ ! -d "$data" ]; then
  # shellcheck disable=SC2086
  "$bin" phantom --mode realistic --out "$data" --cases "$cases" --size $size --seed "$data_seed"
fi

# The table of docs/results.md: the small preset's recipe before this ablation (the keys'
# defaults: foreground "wt", augmentation on every sample, no deep supervision), then one
# change at a time at a budget of about 100 s of training, then combinations. The preset's
# recipe now is "aug0.3+regions+ds" (with validate_every 5).
default_variants() {
  cat <<'EOF'
today-30ep             | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 30 --set milestones=[20] --set validate_every=30
base                   | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45
patch48                | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 15 --set milestones=[10] --set patch_size=[48,48,48] --set validate_every=15
patch64                | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 7 --set milestones=[5] --set patch_size=[64,64,64] --set validate_every=7
no-augment             | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45 --set augment.enabled=false
augment-p0.3           | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45 --set augment.probability=0.3
fg-regions             | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45 --set foreground=regions
bce-dice               | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45 --set loss=bce_dice
batch2                 | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45 --set batch_size=2
batch2-dice            | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45 --set batch_size=2 --set batch_dice=true
poly                   | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set validate_every=45 --set schedule=poly
cosine-warmup          | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set validate_every=45 --set schedule=cosine --set warmup_epochs=2
deep-sup               | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45 --set model.deep_supervision=2
aug0.3+regions         | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45 --set augment.probability=0.3 --set foreground=regions
aug0.3+regions+ds      | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45 --set augment.probability=0.3 --set foreground=regions --set model.deep_supervision=2
aug0.3+regions+ds+bce  | --preset small --set foreground=wt --set augment.probability=1 --set model.deep_supervision=0 --epochs 45 --set milestones=[30] --set validate_every=45 --set augment.probability=0.3 --set foreground=regions --set model.deep_supervision=2 --set loss=bce_dice
EOF
}
if [ -n "$variants_file" ]; then variants=$(cat "$variants_file"); else variants=$(default_variants); fi

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo ' (with uncommitted changes)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, threads $threads"
  echo "data: $data"
} | tee "$out/machine.txt"

echo "variant,seed,train_seconds,dice_wt,dice_tc,dice_et,dice_mean,lesion_dice_wt,lesion_dice_tc,lesion_dice_et" > "$out/table.csv"
while IFS= read -r line; do
  line=${line%%#*}
  [[ $line =~ [^[:space:]] ]] || continue
  name=$(echo "${line%%|*}" | xargs)
  args=${line#*|}
  for seed in $seeds; do
    run="$out/runs/$name-s$seed"
    if [ ! -f "$run/evaluation_summary.csv" ]; then
      rm -rf "$run"
      mkdir -p "$run"
      echo "== $name (seed $seed): train $args"
      t0=$(date +%s.%N)
      # shellcheck disable=SC2086
      "$bin" train --data "$data" --out "$run/train" --threads "$threads" --seed "$seed" \
        $args > "$run/train.log" 2>&1 || { tail -5 "$run/train.log"; exit 1; }
      t1=$(date +%s.%N)
      echo "$t0 $t1" | awk '{printf "%.1f\n", $2 - $1}' > "$run/train_seconds"
      "$bin" predict --checkpoint "$run/train/latest.safetensors" --data "$run/train/holdout" \
        --out "$run/pred" --threads "$threads" --no-postprocess > "$run/predict.log" 2>&1 ||
        { tail -5 "$run/predict.log"; exit 1; }
      "$bin" evaluate --pred "$run/pred" --data "$run/train/holdout" \
        --csv "$run/evaluation.csv" > "$run/evaluate.log" 2>&1 ||
        { tail -5 "$run/evaluate.log"; exit 1; }
    fi
    python3 - "$run" "$name" "$seed" >> "$out/table.csv" <<'PY'
import csv, sys
run, name, seed = sys.argv[1:4]
rows = {r["statistic"]: r for r in csv.DictReader(open(f"{run}/evaluation_summary.csv"))}
mean = rows["mean"]
seconds = open(f"{run}/train_seconds").read().strip()
d = [float(mean[f"{r}_dice"]) for r in ("WT", "TC", "ET")]
l = [float(mean.get(f"{r}_lesion_dice", "nan")) for r in ("WT", "TC", "ET")]
print(",".join([name, seed, seconds] + [f"{x:.4f}" for x in d + [sum(d) / 3] + l]))
PY
    tail -1 "$out/table.csv"
  done
done <<< "$variants"

python3 - "$out" <<'PY'
import csv, statistics, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/table.csv")))
names = list(dict.fromkeys(r["variant"] for r in rows))
lines = ["| variant | seeds | train s | WT | TC | ET | mean | lesion-wise WT / TC / ET |",
         "|---|---|---|---|---|---|---|---|"]
for n in names:
    rs = [r for r in rows if r["variant"] == n]
    m = lambda k: statistics.mean(float(r[k]) for r in rs)
    lines.append(f"| {n} | {len(rs)} | {m('train_seconds'):.0f} | {m('dice_wt'):.3f} | "
                 f"{m('dice_tc'):.3f} | {m('dice_et'):.3f} | **{m('dice_mean'):.3f}** | "
                 f"{m('lesion_dice_wt'):.3f} / {m('lesion_dice_tc'):.3f} / {m('lesion_dice_et'):.3f} |")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
