# SegLoop as a Hugging Face Space (Docker SDK). CPU only.
# Build and run locally:  docker build -t segloop . && docker run -p 7860:7860 segloop
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

# CPU build of torch first (the default PyPI wheel pulls several GB of CUDA libraries), then the rest.
# torch==2.13.0 in requirements.txt is then already satisfied by 2.13.0+cpu.
COPY requirements.txt /tmp/requirements.txt
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Hugging Face runs Space containers as UID 1000.
RUN useradd --create-home --uid 1000 user
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH
WORKDIR /home/user/app
COPY --chown=user . /home/user/app

# Workspace (database, label versions, fine-tuned models): segloop.config.workspace_dir() uses
# SEGLOOP_WORKSPACE if set, else /data/segloop when the Space has persistent storage mounted at /data,
# else ~/.segloop (lost when the Space restarts).
EXPOSE 7860
# XSRF protection stays on, except inside a Hugging Face Space (which sets SPACE_ID): a Space is shown in
# an iframe on huggingface.co, where Streamlit's XSRF cookie is blocked and uploads fail with 403, and
# Hugging Face documents turning the check off for Streamlit Spaces.
CMD ["sh", "-c", "if [ -n \"$SPACE_ID\" ]; then export STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=false; fi; exec streamlit run app.py --server.port 7860 --server.address 0.0.0.0 --server.headless true"]
