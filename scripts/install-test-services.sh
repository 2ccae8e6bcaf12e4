#!/usr/bin/env bash
# The Debian packages that the tests use: dicom3tools (dciodvfy, the DICOM validator), Orthanc with
# its DICOMweb plugin (a real PACS on loopback), docker-compose (checks the compose file where
# no Docker daemon runs), PostgreSQL's and Redis's servers (throwaway ones, for the fault tests)
# and chromium (the dashboard's browser tests, tests/ui, drive it with Playwright; no browser is
# ever downloaded). Idempotent: it does nothing when they are installed. Where they cannot be
# installed (no apt-get, no root or sudo) it says so; the tests that need them then skip, except
# under CI (CI set), where this script fails instead.
set -euo pipefail

need=()
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
# docker-compose validates docker-compose.yml (tests/test_compose.py) where no Docker daemon runs.
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
# The fault tests start throwaway servers of their own (tests/throwaway.py): initdb and pg_ctl,
# and redis-server (the shared PostgreSQL and Redis on 5432 and 6379 may run elsewhere).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

cannot() {
    echo "install-test-services: $1; install ${need[*]} to run the DICOM validator, PACS and browser tests" >&2
    [ -z "${CI:-}" ] || exit 1
    exit 0
}

command -v apt-get >/dev/null 2>&1 || cannot "no apt-get here"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || cannot "not root and no sudo"
    sudo=(sudo -n)
fi
echo "install-test-services: installing ${need[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
