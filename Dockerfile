# The service's image. The builder, on ARG BASE_IMAGE (a CPython 3.11 image), makes /opt/venv
# from uv.lock (the service's runtime dependencies only) and assembles a root filesystem with
# what they run on: the interpreter, the shared libraries it and the extension modules link,
# the standard library less what a server never imports, CA certificates and the app's user
# (image/rootfs.py). The runtime stage starts from an empty root and gets that, the venv and
# service/: no shell, no package manager, no compiler.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_SYSTEM_CERTS=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==0.13.9"
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv sync --frozen --no-default-groups --no-install-project --python "$(command -v python3)"
COPY service/ service/
RUN python3 -m compileall -q service
COPY image/rootfs.py image/
# What the runtime stage leaves out of the standard library: the one list, a reason per entry.
# The image tests import every module that is left and check these are gone.
RUN python3 image/rootfs.py /rootfs --venv /opt/venv \
# test suites, and the extension modules that exist only for them
        --trim 'test' --trim '*/test' --trim '*/tests' --trim '*/idle_test' \
        --trim 'lib-dynload/_test*' --trim 'lib-dynload/_ctypes_test*' \
        --trim 'lib-dynload/_xxtestfuzz*' --trim 'lib-dynload/xxlimited*' \
        --trim 'lib-dynload/_xxsubinterpreters*' --trim '__phello__' --trim '__hello__.py' \
# an IDE, a GUI toolkit and its demos: a server has no display
        --trim 'idlelib' --trim 'tkinter' --trim 'turtle.py' --trim 'turtledemo' \
        --trim 'lib-dynload/_tkinter*' \
# terminals, line editing and the interactive help: a server has no terminal
        --trim 'curses' --trim 'lib-dynload/_curses*' --trim 'lib-dynload/readline*' \
        --trim 'pydoc_data' \
# installing, building and converting Python code: done in the builder, or never
        --trim 'ensurepip' --trim 'venv' --trim 'lib2to3' --trim 'distutils' \
        --trim 'config-3*' --trim '_distutils_system_mod.py' \
# databases and directory services nothing here uses (and the libraries they link)
        --trim 'sqlite3' --trim 'lib-dynload/_sqlite3*' --trim 'dbm/gnu.py' --trim 'dbm/ndbm.py' \
        --trim 'lib-dynload/_dbm*' --trim 'lib-dynload/_gdbm*' --trim 'lib-dynload/nis*' \
# sound devices and formats
        --trim 'lib-dynload/ossaudiodev*' \
# jokes that open a web browser or print on import
        --trim 'antigravity.py' --trim 'this.py' \
# the distribution's hooks: its crash reporter, and its note against pip in the system Python
        --trim 'sitecustomize.py' --trim 'EXTERNALLY-MANAGED'

FROM scratch
COPY --from=builder /rootfs /
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/service /app/service
WORKDIR /app
ENV PATH=/opt/venv/bin \
    LANG=C.UTF-8 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080
USER 10001:10001
EXPOSE 8080
CMD ["python", "-m", "service"]
