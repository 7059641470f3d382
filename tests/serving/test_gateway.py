"""The HTTP gateway against a real embedded model server: every endpoint and every refusal."""

from __future__ import annotations

import io
import json
import re
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from client.palette import voc_colormap
from serving.gateway.app import create_app
from serving.gateway.images import run_length
from serving.gateway.settings import GatewaySettings
from tests.helpers import call_signature, free_port, self_signed_certificate


@pytest.fixture(scope="module")
def model_server(start_server):
    return start_server()


@pytest.fixture(scope="module")
def http(model_server):
    settings = GatewaySettings(
        targets=(f"127.0.0.1:{model_server.port}",),
        max_upload_bytes=2_000_000,
        max_pixels=1_000_000,
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def jpeg(synth_root) -> bytes:
    return sorted((synth_root / "JPEGImages").glob("*.jpg"))[0].read_bytes()


@pytest.fixture(scope="module")
def reference(saved_model_of_served, jpeg) -> np.ndarray:
    outputs = call_signature(
        saved_model_of_served.signatures["segment_jpeg"], jpeg=np.array([jpeg])
    )
    return outputs["class_map"].numpy()[0]


@pytest.fixture(scope="module")
def saved_model_of_served(served_models):
    import tensorflow as tf

    return tf.saved_model.load(str(served_models / "1"))


def timings(response) -> dict[str, float]:
    header = response.headers["server-timing"]
    return {m[0]: float(m[1]) for m in re.findall(r"(\w+);dur=([\d.]+)", header)}


def test_png_is_the_palettized_class_map(http, jpeg, reference):
    response = http.post("/v1/segment", content=jpeg, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "P"
    np.testing.assert_array_equal(np.array(image), reference)
    palette = np.array(image.getpalette(), np.uint8).reshape(-1, 3)
    assert palette[15].tolist() == [192, 128, 128]  # VOC's person colour
    assert response.headers["x-model-version"] == "1"
    assert response.headers["x-image-size"] == f"{reference.shape[0]}x{reference.shape[1]}"
    present = [int(v) for v in response.headers["x-classes-present"].split(",")]
    assert present == np.unique(reference).tolist()
    assert set(timings(response)) == {"read", "rpc", "encode", "total"}


def test_multipart_upload_and_json(http, jpeg, reference):
    response = http.post(
        "/v1/segment", params={"format": "json"}, files={"file": ("a.jpg", jpeg, "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["height"], body["width"]) == reference.shape and body["model_version"] == 1
    rle = body["class_map_rle"]
    rebuilt = np.repeat(rle["values"], rle["counts"]).reshape(reference.shape)
    np.testing.assert_array_equal(rebuilt, reference)
    ids, counts = np.unique(reference, return_counts=True)
    assert [c["id"] for c in body["classes_present"]] == ids.tolist()
    assert [c["pixels"] for c in body["classes_present"]] == counts.tolist()
    assert body["class_names"][15] == "person"
    assert abs(sum(c["fraction"] for c in body["classes_present"]) - 1) < 1e-4
    assert body["timings_ms"]["total"] >= body["timings_ms"]["rpc"] > 0


def test_overlay_is_a_jpeg_of_the_image_size(http, jpeg, reference):
    response = http.post("/v1/segment?format=overlay&alpha=1", content=jpeg,
                         headers={"Content-Type": "image/jpeg"})  # fmt: skip
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    picture = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[:2] == reference.shape
    # alpha=1: pixels of a class take its colour (JPEG blurs edges: compare the median).
    counts = np.bincount(reference.ravel(), minlength=21)
    counts[0] = 0
    assert counts.any(), "the test model must find some object in the scene"
    class_id = int(counts.argmax())
    bgr = np.median(picture[reference == class_id], axis=0)
    assert np.abs(bgr[::-1] - voc_colormap()[class_id]).max() < 30


def test_png_uploads_work(http, jpeg, reference):
    png = cv2.imencode(".png", cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))[1]
    response = http.post(
        "/v1/segment", content=png.tobytes(), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200
    assert np.array(Image.open(io.BytesIO(response.content))).shape == reference.shape


def test_a_multi_picture_jpeg_from_a_phone_is_segmented(http, jpeg, saved_model_of_served):
    picture = Image.open(io.BytesIO(jpeg))
    buffer = io.BytesIO()  # MPO: the picture, then a smaller one (Ultra HDR, depth maps)
    second = picture.resize((picture.width // 2, picture.height // 2))
    picture.save(buffer, format="MPO", save_all=True, append_images=[second])
    mpo = buffer.getvalue()
    response = http.post("/v1/segment", content=mpo, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    expected = call_signature(
        saved_model_of_served.signatures["segment_jpeg"], jpeg=np.array([mpo])
    )
    np.testing.assert_array_equal(
        np.array(Image.open(io.BytesIO(response.content))), expected["class_map"].numpy()[0]
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height pixels in a few dozen bytes (a decompression bomb's
    header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"GIF89a" + b"\0" * 20, "image/gif", 415, "expected a JPEG or PNG image, got a GIF"),
        (b"hello, world", "image/jpeg", 415, "got bytes starting 68 65 6c 6c"),
        (b"", "image/jpeg", 415, "got empty"),
        (
            b"\xff\xd8\xff\xe0" + b"\0" * 40,
            "image/jpeg",
            400,
            "not a readable JPEG: its header is damaged",
        ),
        (_png_header_only(50_000, 50_000), "image/png", 413, "over the limit of 1,000,000"),
        (_png_header_only(1200, 1000), "image/png", 413, "1200×1000 = 1,200,000 pixels"),
        (b"x" * 2_100_000, "image/jpeg", 413, "over the limit of 2,000,000"),
        (b"{}", "application/json", 415, "got Content-Type application/json"),
    ],
)
def test_refusals_name_the_problem(http, body, content_type, status, message):
    response = http.post("/v1/segment", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_a_truncated_jpeg_is_a_400_with_the_servers_reason(http, jpeg):
    response = http.post("/v1/segment", content=jpeg[: len(jpeg) // 3],
                         headers={"Content-Type": "image/jpeg"})  # fmt: skip
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("model server: ") and "Invalid JPEG data" in detail
    for internal in ("node", "Graph execution", "[Op:", "stack trace", "{{"):
        assert internal not in detail


def test_multipart_without_the_file_field(http, jpeg):
    response = http.post("/v1/segment", files={"image": ("a.jpg", jpeg, "image/jpeg")})
    assert response.status_code == 400 and "field named 'file'" in response.json()["detail"]


def test_bad_query_values_are_422(http, jpeg):
    response = http.post("/v1/segment?format=gif", content=jpeg,
                         headers={"Content-Type": "image/jpeg"})  # fmt: skip
    assert response.status_code == 422
    assert http.post("/v1/segment?format=overlay&alpha=2", content=jpeg).status_code == 422


def test_model_health_readiness_and_metrics(http):
    model = http.get("/v1/model").json()
    assert model["model"] == "deeplabv3" and model["version"] == 1
    assert len(model["class_names"]) == 21 and model["palette"][15] == [192, 128, 128]
    assert model["input_size"] == [64, 64] and model["versions"][0]["state"] == "AVAILABLE"
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    metrics = http.get("/metrics").text
    assert 'rcseg_gateway_requests_total{route="/v1/model",status="200"}' in metrics
    assert "rcseg_gateway_request_seconds_bucket" in metrics


def test_page_and_openapi(http):
    page = http.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    schema = http.get("/openapi.json").json()
    from openapi_spec_validator import validate

    validate(schema)
    body = schema["paths"]["/v1/segment"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/jpeg", "image/png"} <= set(body)
    assert {"/v1/model", "/healthz", "/readyz"} <= set(schema["paths"])


def test_model_server_down_is_503_within_a_second_naming_it(jpeg):
    dead = f"127.0.0.1:{free_port()}"
    with TestClient(create_app(GatewaySettings(targets=(dead,)))) as http:  # 30 s deadline
        started = time.monotonic()
        response = http.post("/v1/segment", content=jpeg, headers={"Content-Type": "image/jpeg"})
        assert time.monotonic() - started < 2.5  # connect_timeout 1 s, not the deadline
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert detail.startswith(f"model server: {dead}: UNAVAILABLE") and "refused" in detail
        assert http.get("/readyz").status_code == 503
        assert http.get("/v1/model").status_code == 503
        assert http.get("/healthz").status_code == 200  # the process itself is fine


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_the_gateway_reaches_a_tls_model_server_and_names_a_mismatch(
    start_server, certificate, jpeg
):
    key, cert = certificate
    server = start_server(tls_cert=cert, tls_key=key)
    target = (f"localhost:{server.port}",)
    with TestClient(create_app(GatewaySettings(targets=target, ca_cert=cert))) as http:
        response = http.post("/v1/segment", content=jpeg, headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 200, response.text
    with TestClient(create_app(GatewaySettings(targets=target))) as http:
        started = time.monotonic()
        response = http.post("/v1/segment", content=jpeg, headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 503 and time.monotonic() - started < 2
        assert "speaks TLS and this client sends plain text" in response.json()["detail"]


def test_an_unreadable_ca_certificate_is_named_at_start(tmp_path, capsys):
    from serving.gateway.cli import main

    assert main(["--ca-cert", str(tmp_path / "missing.pem")]) == 2
    assert "cannot read the CA certificate (--ca-cert)" in capsys.readouterr().out


def test_run_length_round_trip():
    class_map = np.random.default_rng(0).integers(0, 3, (17, 23), dtype=np.uint8)
    rle = run_length(class_map)
    np.testing.assert_array_equal(
        np.repeat(rle["values"], rle["counts"]).reshape(17, 23), class_map
    )
    assert run_length(np.zeros((0, 4), np.uint8)) == {"values": [], "counts": []}
    assert json.dumps(rle)


def _upload_chunks(data: bytes, size: int = 65536):
    """A body without Content-Length (chunked transfer encoding)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_chunked_uploads_are_bounded_too(http):
    raw = http.post("/v1/segment", content=_upload_chunks(b"\xff" * 2_500_000),
                    headers={"Content-Type": "image/jpeg"})  # fmt: skip
    assert raw.status_code == 413 and "more than 2,000,000 bytes" in raw.json()["detail"]
    boundary = "b0undary"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode()
    multipart += b"\xff" * 2_500_000 + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    response = http.post(
        "/v1/segment",
        content=_upload_chunks(multipart),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413 and "over the limit" in response.json()["detail"]


def test_a_gif_in_the_multipart_field_is_415(http):
    response = http.post("/v1/segment", files={"file": ("a.gif", b"GIF89a" + b"\0" * 30)})
    assert response.status_code == 415 and "a GIF" in response.json()["detail"]


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16"])
def test_png_overlays_of_other_pixel_formats(http, jpeg, mode):
    image = Image.open(io.BytesIO(jpeg)).convert("L" if mode != "RGBA" else "RGBA")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image, np.uint16) * 257)
    out = io.BytesIO()
    image.save(out, format="PNG")
    response = http.post("/v1/segment?format=overlay", content=out.getvalue(),
                         headers={"Content-Type": "image/png"})  # fmt: skip
    assert response.status_code == 200, response.text
    picture = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[:2] == (image.height, image.width)


@pytest.mark.parametrize("orientation", [3, 6])
def test_phone_photos_are_segmented_as_people_see_them(http, saved_model_of_served, jpeg,
                                                       orientation):  # fmt: skip
    stored = Image.open(io.BytesIO(jpeg))
    exif = stored.getexif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    stored.save(out, format="JPEG", quality=95, exif=exif.tobytes())
    tagged = out.getvalue()
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(tagged))).convert("RGB"))
    expected = call_signature(
        saved_model_of_served.signatures["serving_default"], images=upright[None]
    )
    for format in ("png", "overlay"):
        response = http.post(f"/v1/segment?format={format}", content=tagged,
                             headers={"Content-Type": "image/jpeg"})  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.headers["x-image-size"] == f"{upright.shape[0]}x{upright.shape[1]}"
        if format == "png":
            np.testing.assert_array_equal(
                np.array(Image.open(io.BytesIO(response.content))),
                expected["class_map"].numpy()[0],
            )
        else:
            picture = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape[:2] == upright.shape[:2]


def test_unknown_paths_answer_json_404(http):
    response = http.get("/v2/nothing")
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}
    assert 'route="unmatched",status="404"' in http.get("/metrics").text


# -- the API's documentation and liveness, without a trained model ------------------------


def _small_jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((48, 64, 3), 127, np.uint8))[1].tobytes()


@pytest.fixture(scope="module")
def openapi() -> dict:
    """The OpenAPI document of a gateway whose model server is down (the schema needs none)."""
    settings = GatewaySettings(targets=(f"127.0.0.1:{free_port()}",), timeout=1.0)
    with TestClient(create_app(settings)) as http:
        return http.get("/openapi.json").json()


def _schema(openapi: dict, path: str, method: str, status: str, media: str) -> dict:
    """The component schema that ``path``'s answer with ``status`` names for ``media``."""
    content = openapi["paths"][path][method]["responses"][status]["content"]
    reference = content[media]["schema"]["$ref"]
    assert reference.startswith("#/components/schemas/")
    return openapi["components"]["schemas"][reference.rsplit("/", 1)[1]]


MODEL_FIELDS = {"model", "version", "class_names", "palette", "input_size", "output_stride",
                "versions", "limits"}  # fmt: skip
SEGMENT_FIELDS = {"model", "model_version", "height", "width", "class_names", "classes_present",
                  "class_map_rle", "timings_ms"}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "method", "status", "fields"),
    [
        ("/healthz", "get", "200", {"status"}),
        ("/readyz", "get", "200", {"ready", "model", "servers"}),
        ("/v1/model", "get", "200", MODEL_FIELDS),
        ("/v1/segment", "post", "200", SEGMENT_FIELDS),
        ("/v1/model", "get", "503", {"detail"}),
        ("/v1/segment", "post", "413", {"detail"}),
        ("/v1/segment", "post", "415", {"detail"}),
        ("/v1/segment", "post", "503", {"detail"}),
    ],
)
def test_openapi_names_a_schema_for_each_json_answer(openapi, path, method, status, fields):
    schema = _schema(openapi, path, method, status, "application/json")
    assert set(schema["properties"]) == fields
    assert set(schema["required"]) == fields


def test_openapi_documents_the_binary_answers_and_readiness(openapi):
    from openapi_spec_validator import validate

    validate(openapi)
    content = openapi["paths"]["/v1/segment"]["post"]["responses"]["200"]["content"]
    for media in ("image/png", "image/jpeg"):
        assert content[media]["schema"] == {"type": "string", "format": "binary"}
    not_ready = openapi["paths"]["/readyz"]["get"]["responses"]["503"]["content"]
    refs = {s["$ref"].rsplit("/", 1)[1] for s in not_ready["application/json"]["schema"]["anyOf"]}
    assert {"Readiness", "ErrorBody"} == refs
    model = openapi["components"]["schemas"]["ModelInfo"]["properties"]
    assert model["limits"]["$ref"].endswith("/Limits")


def _limit_thread_tokens(app, tokens: int):
    """``app`` with ``tokens`` worker threads for blocking work instead of anyio's 40, so a
    few uploads fill the pool."""
    import anyio.to_thread

    async def limited(scope, receive, send):
        if scope["type"] == "lifespan":
            anyio.to_thread.current_default_thread_limiter().total_tokens = tokens
        await app(scope, receive, send)

    return limited


@pytest.fixture
def gateway_without_server():
    """A gateway served by uvicorn on 127.0.0.1 (a thread) in front of a model server port
    where nothing listens; its thread pool holds two workers."""
    import threading
    import time

    import uvicorn

    dead = f"127.0.0.1:{free_port()}"  # waited on for 6 s, as a server that hangs would be
    settings = GatewaySettings(targets=(dead,), timeout=6.0, connect_timeout=6.0)
    app = _limit_thread_tokens(create_app(settings), tokens=2)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=15)


@pytest.mark.slow  # starts a gateway and waits out a 6 s deadline
def test_healthz_answers_while_uploads_wait_on_a_dead_model_server(gateway_without_server):
    import threading
    import time
    import urllib.error
    import urllib.request

    url = gateway_without_server
    statuses: list[int] = []

    def upload() -> None:
        request = urllib.request.Request(
            f"{url}/v1/segment", data=_small_jpeg(), headers={"Content-Type": "image/jpeg"}
        )
        try:
            urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)

    uploads = [threading.Thread(target=upload, daemon=True) for _ in range(2)]
    for thread in uploads:
        thread.start()
    time.sleep(1.0)  # the uploads are read by now and hold both workers for 6 s
    started = time.perf_counter()
    with urllib.request.urlopen(f"{url}/healthz", timeout=4) as response:
        assert json.load(response) == {"status": "ok"}
    # Waiting for a worker would take the rest of the uploads' 6 s deadline.
    assert time.perf_counter() - started < 2.5
    assert all(thread.is_alive() for thread in uploads), "the uploads must still be waiting"
    for thread in uploads:
        thread.join(timeout=30)
    assert statuses == [503] * 2  # each waited out its 6 s deadline, then said why


def test_the_cli_takes_its_defaults_from_the_settings():
    from serving.gateway.cli import build_parser, settings_from

    assert settings_from(build_parser().parse_args([])) == GatewaySettings()
    pinned = settings_from(build_parser().parse_args(["--version", "3", "--target", "a:1"]))
    assert pinned.version == 3 and pinned.targets == ("a:1",)
    # TF Serving's rule for version numbers: ASCII digits only; anything else is a label.
    assert settings_from(build_parser().parse_args(["--version", "²"])).version == "²"


def test_gateway_help_and_app_load_no_tensorflow():
    import subprocess
    import sys

    code = (
        "import runpy, sys\n"
        "sys.argv = ['serving', 'gateway', '--help']\n"
        "try:\n"
        "    runpy.run_module('serving', run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "import serving.gateway.app\n"
        "assert 'tensorflow' not in sys.modules, 'the gateway loaded TensorFlow'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert "--max-pixels" in completed.stdout and "default localhost:" in completed.stdout
