# A replay ComfyUI for CI whose tests are not in Python: the bundled default cassette on 0.0.0.0:8189.
# Off loopback the admin API (/__cassettes__) needs `Authorization: Bearer <token>`: set COMFY_CASSETTES_ADMIN_TOKEN
# (docker run -e ...), or read the token the server generates and prints on its second line (docker logs).
# Serve your own cassettes by mounting them and naming them: docker run -v $PWD/cassettes:/cassettes IMAGE
#   serve /cassettes --host 0.0.0.0 --port 8189
# Build with the ComfyUI web page: docker build --build-arg EXTRAS='[frontend]' .
FROM python:3.12-slim
ARG EXTRAS=""
COPY . /src
RUN pip install --no-cache-dir "/src${EXTRAS}" && rm -rf /src
EXPOSE 8189
HEALTHCHECK --interval=2s --timeout=2s --retries=15 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8189/system_stats')"]
ENTRYPOINT ["comfy-cassettes"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8189"]
