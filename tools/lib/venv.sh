# Sourced by tools/setup.sh and tools/device_build.sh (which define `stage` and `die`).
# make_venv VENV PYTHON LABEL: a venv at VENV made by PYTHON, with requirements.txt and mfuse (editable),
# reinstalled only when requirements.txt, pyproject.toml or the Python version change.
make_venv() {
  local venv="$1" python="$2" label="$3" want have
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" || die "$python -m venv failed (python3-venv?)"
  want="$( { cat "$REPO/requirements.txt" "$REPO/pyproject.toml"; "$python" --version; } | sha256sum | cut -c1-16)"
  have="$(cat "$venv/.mfuse-requirements" 2>/dev/null || true)"
  if [ "$want" = "$have" ]; then
    stage "$label" "venv: $(basename "$venv") up to date"
    return
  fi
  stage "$label" "venv: installing requirements.txt into $(basename "$venv")"
  "$venv/bin/python" -m pip install -q --upgrade pip==25.3 || die "pip upgrade failed (PyPI reachable?)"
  "$venv/bin/python" -m pip install -q -r "$REPO/requirements.txt" || die "pip install -r requirements.txt failed"
  "$venv/bin/python" -m pip install -q --no-deps -e "$REPO" || die "pip install -e . failed"
  echo "$want" >"$venv/.mfuse-requirements"
}
