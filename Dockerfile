# One image for every cityops process (worker, simulator, intake); pinned by constraints.txt.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY cityops ./cityops
COPY scripts/build_compiled.py ./scripts/
# An editable install, so the worker's hot modules compiled in place with mypyc (see
# cityops/compiled.py) are the ones imported; the compiler and mypy leave the image after.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir -c constraints.txt -e . mypy \
    && python scripts/build_compiled.py \
    && python -c "import cityops.compiled as c, sys; print(c.STATUS.reason); sys.exit(not c.STATUS.used)" \
    && pip uninstall -y mypy \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* build
ENV CITYOPS_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["cityops"]
CMD ["--help"]
