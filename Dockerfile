# SegLoop as a Hugging Face Space (Docker SDK). CPU only: the CPU builds of torch and ONNX Runtime, never
# the CUDA ones (a CPU Space cannot use them and they are over 2 GB).
# Build and run locally:  docker build -t segloop . && docker run -p 7860:7860 segloop
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_CLIENT_TOOLBAR_MODE=viewer

# Hugging Face runs Space containers as UID 1000. /data is where a Space mounts persistent storage; made
# here and owned by that user, so the workspace lands there (segloop.config.workspace_choice) and a
# root-owned /data never silently sends it to the home folder.
RUN useradd --create-home --uid 1000 user && mkdir -p /data && chown 1000:1000 /data

# torch's CPU wheel first (PyPI's default Linux wheel pulls several GB of CUDA libraries); the package
# with the app and CPU ONNX Runtime extras then finds torch==2.13.0 already satisfied.
COPY --chown=user . /home/user/app
WORKDIR /home/user/app
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install ".[app,cpu]" \
 && ! pip show onnxruntime-gpu >/dev/null 2>&1

USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH

EXPOSE 7860
# Logs which workspace was chosen and why, writes the sign-in settings ([auth] in .streamlit/secrets.toml)
# when the environment holds them (a Space with hf_oauth: true, or SEGLOOP_OIDC_*; see components/auth_setup.py),
# then serves the app. XSRF protection stays on, except inside a Hugging Face Space (which sets SPACE_ID): a
# Space is shown in an iframe on huggingface.co, where Streamlit's XSRF cookie is blocked and uploads fail with
# 403, and Hugging Face documents turning the check off for Streamlit Spaces. With sign-in configured Streamlit
# keeps the check on anyway; the app is then used in its own tab (README, "Sign-in and roles").
CMD ["sh", "-c", "python -m segloop workspace where; python -m components.auth_setup; if [ -n \"$SPACE_ID\" ]; then export STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=false; fi; exec streamlit run app.py --server.port 7860 --server.address 0.0.0.0 --server.headless true"]
