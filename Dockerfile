# agent-memory-proxy runtime image: a virtualenv on a slim Python, run as a non-root user
# under an init (dumb-init), with uvloop and a HEALTHCHECK.
#
#   docker build -t agent-memory-proxy .
#   docker run --rm -p 127.0.0.1:8090:8090 \
#       -e AMP_UPSTREAM_URL=http://agent-memory-server:8000 -e AMP_REDIS_URL=redis://redis:6379/0 \
#       agent-memory-proxy
#
# Every setting comes from an AMP_<KEY> variable (the keys of config/proxy.example.toml);
# arguments after the image name are added to `serve`. The build needs only the package index;
# when deploy/wheels/ holds wheels it installs from them alone (an offline build).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_FIND_LINKS=/wheels
COPY deploy/wheels/ /wheels/
RUN python -m venv /opt/venv
WORKDIR /src
# The dependencies get their own layer, keyed on pyproject.toml only: a code change does not
# reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['speed'] + ['dumb-init>=1.2.5']))" \
        > /tmp/requirements.txt \
 && if ls /wheels/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1; fi \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt
COPY proxy ./proxy
RUN if ls /wheels/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1; fi \
 && /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/agent-memory-proxy --help >/dev/null \
 && /opt/venv/bin/pip uninstall -q -y pip setuptools

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin amp
COPY --from=build /opt/venv /opt/venv
# Bytecode was compiled at install; nothing is written at run time, so the root file system
# can be read-only.
# MALLOC_ARENA_MAX: big bodies parsed in worker threads would otherwise each keep an arena.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MALLOC_ARENA_MAX=2
USER 10001:10001
EXPOSE 8090
# dumb-init forwards SIGTERM to the proxy alone (--single-child): with several workers, the
# parent passes it on to each, and each drains and flushes its writes before exiting.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/-/healthz' % os.environ.get('AMP_PORT', '8090'), timeout=2)"]
ENTRYPOINT ["dumb-init", "--single-child", "--", "agent-memory-proxy", "serve", "--host", "0.0.0.0"]
