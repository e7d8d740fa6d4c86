# Sourced by the other scripts: make sure .venv exists with recordkit installed (CPU TensorFlow
# and the test tools). Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
stamp=.venv/.recordkit-installed
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip 'setuptools>=77'
    .venv/bin/python -m pip install --quiet -e '.[cpu,test]'
    # tf-keras must match TensorFlow's minor version; --no-deps keeps tensorflow-cpu the only TF.
    tf_minor=$(.venv/bin/python -c "from importlib.metadata import version; print(version('tensorflow-cpu').rsplit('.', 1)[0])")
    .venv/bin/python -m pip install --quiet --no-deps "tf-keras==${tf_minor}.*"
    cp pyproject.toml "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
