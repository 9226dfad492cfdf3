#!/usr/bin/env bash
# Every GPU check in one call, for a session that is lent a GPU (the device tool): the CUDA tests,
# then the gradient benchmark with a ResNet-50 at 224 px (torchvision's where it imports, else the
# same layout in plain PyTorch) and with the small models at 32 px, then the perturbation presets
# at 224 px. About 6 minutes on an H100/H200. Results go to the folder given (default
# benchmarks/results); commit them and quote them in the README.
#
#   bash benchmarks/cuda_checks.sh "$OUT"
#
# The device image has torch, torchvision and scikit-image but not captum: carry its wheel in .whl/
# (pip download --no-deps captum==0.9.0 -d .whl) and this script installs it. fast-slic is not
# used there (it segfaulted on that image once): the benchmarks segment with scikit-image's SLIC.
set -uo pipefail
out=${1:-benchmarks/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
# fail fast when something the checks import is missing (captum.attr also imports matplotlib and tqdm)
python3 -c "import captum.attr, scipy, skimage, pytest, tqdm, matplotlib" || exit 1
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name(0).split()[-1].lower())") || exit 1
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/core/test_counter_streams.py \
    tests/explain/gradient/test_sampling.py tests/explain/gradient/test_methods.py \
    2>&1 | tee "$out/cuda_tests_$gpu.log"
tests_status=${PIPESTATUS[0]}
resnet50=resnet50_imagenet
python3 -c "import torchvision" 2>/dev/null && resnet50=torchvision:resnet50
tag=${resnet50#torchvision:}
python3 benchmarks/bench_gradient.py --device cuda --arch "$resnet50" --size 224 --images 16 --samples 16 \
    --chunks 32,64,128,256 --segmenters slic --repeats 3 --out "$out/gradient_cuda_${gpu}_${tag%_imagenet}_224.json"
for arch in small_cnn resnet20; do
    images=64; [ "$arch" = resnet20 ] && images=256
    python3 benchmarks/bench_gradient.py --device cuda --arch "$arch" --images "$images" --samples 32 \
        --chunks 256,512,1024,2048 --segmenters slic --out "$out/gradient_cuda_${gpu}_${arch}.json"
done
python3 benchmarks/bench_perturbation.py --device cuda --size 224 --images 4 --arch "$resnet50" --no-memory \
    --out "$out/perturbation_224_cuda_${gpu}_${tag%_imagenet}.json"
echo "CUDA tests exit status: $tests_status"
exit "$tests_status"
