#!/usr/bin/env bash
# The README's test command: builds .venv (if needed), installs bep-gpu with its test tools and the optional
# packages whose tests would otherwise be skipped, then runs the default test suite (pass pytest args through).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
pip install '.[test,progress,plot]'
# Optional extras the tests exercise when present. torch is pinned: a CPU build of 2.13.0 is what CI's pip
# serves without a multi-GB CUDA download. sktime and scikit-learn are read only for their data files.
pip install 'torch==2.13.0' || echo "test.sh: torch not installed; QAT baseline tests will be skipped"
pip install --no-deps sktime scikit-learn || echo "test.sh: sktime/scikit-learn not installed; UCR/digits tests skip"
# scikit-learn's own dependencies, so that its estimator checks run against bep_gpu's estimators.
pip install scipy joblib threadpoolctl narwhals || echo "test.sh: scikit-learn unimportable; its estimator checks skip"
# cuobjdump and nvdisasm (CUDA's SASS tools, from PyPI) for the static SASS report's test; nvcc is on the image.
pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm || echo "test.sh: cuobjdump/nvdisasm not installed; SASS test skips"
if command -v mpicc >/dev/null 2>&1; then
  pip install mpi4py || echo "test.sh: mpi4py not installed; multi-process tests will be skipped"
fi
exec .venv/bin/python -m pytest -q -rs "$@"
