# SegLoop as a Hugging Face Space (Docker SDK). CPU only and slim: the app views, segments, corrects and
# evaluates with ONNX Runtime's CPU build; PyTorch, MONAI and onnx (training, fine-tuning and ONNX export,
# the "train" extra) are left out, and the Retrain page says how to add them.
# Build and run locally:  docker build -t segloop . && docker run -p 7860:7860 segloop
# With training in the image (CPU torch, about 0.9 GB more):
#   docker build --build-arg EXTRAS=app,cpu,train -t segloop-train .
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

# The package's extras: the app and CPU ONNX Runtime; add train for training (never gpu: a CPU Space
# cannot use CUDA, and two ONNX Runtime builds fight over one module).
ARG EXTRAS=app,cpu
# With train only: torch's CPU wheel first (PyPI's default Linux wheel pulls several GB of CUDA libraries);
# the package then finds torch==2.13.0 already satisfied. A build machine that cannot reach PyTorch's index
# passes another one holding torch==2.13.0+cpu (README, Deployment). torch's C++ test programs (torch/test,
# torch/bin) and headers (torch/include, used only to compile C++ extensions or torch.compile kernels, which
# SegLoop does not) are 195 MB that nothing here runs. Without train, the build checks torch stayed out.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY --chown=user . /home/user/app
WORKDIR /home/user/app
RUN case ",$EXTRAS," in \
      *,train,*) pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple ;; \
    esac \
 && pip install ".[$EXTRAS]" \
 && ! pip show onnxruntime-gpu >/dev/null 2>&1 \
 && case ",$EXTRAS," in \
      *,train,*) torch_dir="$(python -c 'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])')" \
        && rm -rf "$torch_dir/test" "$torch_dir/include" \
        && find "$torch_dir/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} + ;; \
      *) ! pip show torch >/dev/null 2>&1 ;; \
    esac

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
