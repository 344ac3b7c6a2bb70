#!/usr/bin/env bash
# The k-fold comparison of issue 18 on every real category with defect masks in ../shared/data:
# one `iadbe benchmark --protocol kfold` per category into docs/benchmark/kfold/<category>/ (resumable:
# run it again to add models, e.g. MODELS=padim,patchcore,unet_lite0,yolov8n, or to finish stopped runs).
# Caps for 2 shared CPU cores (stated in each table): 128 px, 40 normal training images, 1.5 min of training,
# one torch thread per run: on this shared machine (load 10-12 on 2 cores) two threads made a U-Net step
# 10x slower (13 s against 1.3 s) through thread contention.
set -u
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
DATA=${DATA:-../shared/data}
MODELS=${MODELS:-padim,patchcore,unet_lite0}
CAPS=(--protocol kfold --folds 3 --image-size 128 --max-train-images 40 --max-train-minutes 1.5 --timing-images 3)
ONLY=${ONLY:-tire,transistor,capsules,juice_bottle,kolektor}  # which of them (e.g. two streams side by side)
run() {  # kind root category [folder name]
  case ",$ONLY," in *",${4:-$3},"*) ;; *) return ;; esac
  python -m iadbe benchmark --dataset "$1" --root "$2" --categories "$3" --models "$MODELS" "${CAPS[@]}" \
    --out "docs/benchmark/kfold/${4:-$3}" --compare-study
}
run mvtec3d "$DATA/mvtec_3d" tire
run mvtec "$DATA/mvtec_ad" transistor
run visa "$DATA/visa" capsules
run mvtec "$DATA/mvtec_loco" juice_bottle
run folder "$DATA/kolektorsdd_yolo" Datasets kolektor
