# One image for every cityops process (worker, simulator, intake); pinned by constraints.txt.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY cityops ./cityops
RUN pip install --no-cache-dir -c constraints.txt .
ENV CITYOPS_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["cityops"]
CMD ["--help"]
