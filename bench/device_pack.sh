#!/bin/sh
# Packs what bench/device_run.sh needs on a GPU host that has JAX, numpy and Pillow but no
# network: wheels for Python 3.12 (x86-64) into .whl/, and Debian's redis-server with the
# shared libraries it links against into .redis/. Run once, here, from the repository root;
# both folders are git-ignored (.git/info/exclude) and travel as carried paths. Versions are
# this project's pins (pyproject.toml) and what they resolve to in `make install`; the gateway
# imports obstore (shared/blobs) and highdicom (shared/dicom_results) at start-up, so they and
# their compiled dependencies travel too (pylibjpeg-libjpeg has manylinux_2_31+ wheels only).
set -eu
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || printf '/.whl/\n/.redis/\n' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
    --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 \
    keras==3.15.1 namex==0.1.0 optree==0.20.0 celery==5.6.3 kombu==5.7.0 billiard==4.3.2 \
    vine==5.1.0 amqp==5.4.2 click-didyoumean==0.3.1 click-repl==0.4.1 click-plugins==1.1.1.2 \
    prompt-toolkit==3.0.53 wcwidth==0.9.4 tzdata==2026.6 tzlocal==5.4.5 celery-batches==0.11 \
    redis==8.1.0 hiredis==3.5.0 pydantic==2.14.4 pydantic-core==2.50.5 \
    pydantic-settings==2.16.3 python-dotenv==1.2.4 annotated-types==0.8.0 \
    typing-inspection==0.4.5 typing-extensions==4.16.0 fastapi==0.165.0 starlette==1.10.0 \
    opentelemetry-api==1.45.2 uvicorn==0.54.0 httptools==0.9.0 python-multipart==0.0.34 \
    pydicom==3.0.2 py-spy==0.4.3 \
    obstore==0.12.1 highdicom==0.28.2 pyjpegls==1.5.1 pylibjpeg==2.1.0 \
    pylibjpeg-libjpeg==2.5.0 pylibjpeg-openjpeg==2.6.0
# redis-server (redis-tools holds the binary), with every library it links except glibc's.
rm -rf .redis && mkdir -p .redis/bin .redis/lib .redis/debs
(cd .redis/debs && apt-get download redis-server redis-tools libjemalloc2 liblzf1)
for deb in .redis/debs/*.deb; do dpkg -x "$deb" .redis/root; done
binary=.redis/root/usr/bin/redis-check-rdb  # redis-server is a link to it
LD_LIBRARY_PATH="$PWD/.redis/root/usr/lib/x86_64-linux-gnu" ldd "$binary" |
    awk '$3 ~ /^\// && $1 !~ /^(libc\.so|libm\.so|ld-linux)/ {print $3}' |
    while read -r library; do cp -L "$library" .redis/lib/; done
cp -L "$binary" .redis/bin/redis-server.bin
cat > .redis/bin/redis-server <<'WRAPPER'
#!/bin/sh
here=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$here/../lib" exec "$here/redis-server.bin" "$@"
WRAPPER
chmod +x .redis/bin/redis-server
rm -rf .redis/debs .redis/root
.redis/bin/redis-server --version
du -sh .whl .redis
