#!/usr/bin/env bash
# Build a wheel, install it into a fresh virtual environment away from the source tree, and
# run the main job (a few steps), evaluation and encoding from the installed package only.
# Idempotent: the check venv is reused when its wheel hash matches.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
py="${MMTOK_VENV:-$root/.venv}/bin/python"
work="${MMTOK_WHEEL_DIR:-$root/.cache/wheel-check}"
mkdir -p "$work/dist"
rm -f "$work/dist"/*.whl
echo "[wheel] building"
"$py" -m build --wheel --outdir "$work/dist" "$root" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel="$(ls "$work"/dist/mmtok-*.whl)"
venv="$work/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0
fi
"$venv/bin/pip" install -q --force-reinstall --no-deps "$wheel"
"$venv/bin/pip" install -q "$wheel"
run="$(mktemp -d)"
trap 'rm -rf "$run"' EXIT
cd "$run"   # no source tree on the path: only the installed package
"$venv/bin/python" -c "import mmtok, sys; p = mmtok.__file__; print('[wheel] mmtok from', p); sys.exit('site-packages' not in p)"
"$venv/bin/mmtok" demo --steps 6 --run-dir demo --set optim.batch_size=4 --set checkpoint.every=3 \
  --set logging.image_every=3 --set logging.progress=false --set cpu_threads=1
"$venv/bin/mmtok" eval demo/final --data synthetic:16 --batch-size 8 --no-fid --lpips-weights none --no-progress --out eval
test -s eval/report.json
"$venv/bin/mmtok" encode demo/final synthetic:24 tokens --batch-size 8 --shard-size 16 --workers 0
"$venv/bin/mmtok" inspect tokens
"$venv/bin/mmtok" train --list > recipes.txt && grep image/titok_t32_fsq_synthetic recipes.txt && grep audio/rvq_codec_tiny_synthetic recipes.txt \
  && grep video/causal3d_tiny_synthetic recipes.txt
# the audio path: a built-in audio recipe, eval with the audio suite, WAV decode
"$venv/bin/mmtok" train audio/rvq_codec_tiny_synthetic run_dir=audio schedule.total_steps=4 checkpoint.every=4 \
  logging.every=2 logging.image_every=4 logging.progress=false cpu_threads=1
"$venv/bin/mmtok" eval audio/final --data synthetic:4 --batch-size 4 --no-progress --out audio_eval
test -s audio_eval/report.json
"$venv/bin/mmtok" encode audio/final synthetic:4 audio_tokens --batch-size 4 --workers 0
"$venv/bin/mmtok" decode audio_tokens audio_wavs --checkpoint audio/final --no-progress
ls audio_wavs/*.wav > /dev/null
# the video path: joint image + video recipe, eval with the video suite, MP4 decode
"$venv/bin/mmtok" train video/causal3d_tiny_synthetic run_dir=video schedule.total_steps=4 checkpoint.every=4 \
  logging.every=2 logging.image_every=4 logging.progress=false cpu_threads=1
"$venv/bin/mmtok" eval video/final --data synthetic:4 --batch-size 4 --no-fvd --lpips-weights none --no-progress --out video_eval
test -s video_eval/report.json
"$venv/bin/mmtok" encode video/final synthetic:4 video_tokens --batch-size 4 --workers 0
"$venv/bin/mmtok" decode video_tokens video_mp4 --checkpoint video/final --no-progress
ls video_mp4/*.mp4 > /dev/null
echo "[wheel] ok: demo, eval, encode, decode and inspect ran from the installed wheel (image, audio and video)"
