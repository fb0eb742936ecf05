"""The Replicate double's model catalogue: input/output schemas shaped like the real ones.

Schemas follow Cog's OpenAPI output (``allOf``/``$ref`` enums, ``x-order``, titles); the SDXL
input schema is the one recorded from the real API (``models-get.yaml``). Sizes follow the model
code (cog-flux ``ASPECT_RATIOS``, Imagen's documented sizes). Tests import ``MODELS`` and the
``*_REF`` names to get the expected schemas.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FLUX_SCHNELL_REF = "black-forest-labs/flux-schnell"
FLUX_PRO_REF = "black-forest-labs/flux-1.1-pro"
IMAGEN_REF = "google/imagen-4"
SDXL_REF = "stability-ai/sdxl"
SDXL_LIGHTNING_REF = "bytedance/sdxl-lightning-4step"
GRANITE_REF = "ibm-granite/granite-3.0-8b-instruct"
KONTEXT_REF = "black-forest-labs/flux-kontext-pro"
FILL_REF = "black-forest-labs/flux-fill-pro"

SDXL_VERSION = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"
SDXL_OLD_VERSION = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
SDXL_LIGHTNING_VERSION = "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637"

#: cog-flux ``ASPECT_RATIOS`` (1 megapixel); ``megapixels="0.25"`` halves each side.
FLUX_ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
#: Imagen 4's output sizes per aspect ratio.
IMAGEN_ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "9:16": (768, 1408),
    "16:9": (1408, 768),
    "3:4": (896, 1280),
    "4:3": (1280, 896),
}
FLUX_PRO_ASPECTS = ["custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"]

URI_LIST_OUTPUT: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "format": "uri"},
    "title": "Output",
}
URI_OUTPUT: dict[str, Any] = {"type": "string", "format": "uri", "title": "Output"}
TEXT_ITERATOR_OUTPUT: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string"},
    "title": "Output",
    "x-cog-array-type": "iterator",
    "x-cog-array-display": "concatenate",
}

OutputKind = Literal["images", "image", "text"]


# -- schema builders (Cog's shapes) ---------------------------------------------------------------

_UNSET: Any = object()


def _prop(type_: str, title: str, order: int, desc: str, **extra: Any) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": type_, "title": title, "x-order": order}
    prop.update({key: value for key, value in extra.items() if value is not _UNSET})
    prop["description"] = desc
    return prop


def _str(title: str, order: int, desc: str, default: Any = _UNSET, uri: bool = False) -> Any:
    return _prop("string", title, order, desc, default=default, format="uri" if uri else _UNSET)


def _bool(title: str, order: int, desc: str, default: bool) -> dict[str, Any]:
    return _prop("boolean", title, order, desc, default=default)


def _int(
    title: str, order: int, desc: str, default: Any = _UNSET, lo: Any = _UNSET, hi: Any = _UNSET
) -> dict[str, Any]:
    return _prop("integer", title, order, desc, default=default, maximum=hi, minimum=lo)


def _num(
    title: str, order: int, desc: str, default: Any = _UNSET, lo: Any = _UNSET, hi: Any = _UNSET
) -> dict[str, Any]:
    return _prop("number", title, order, desc, default=default, maximum=hi, minimum=lo)


def _choice(name: str, order: int, description: str, default: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {"allOf": [ref], "default": default, "x-order": order, "description": description}


def _enum(name: str, values: list[str]) -> dict[str, Any]:
    return {"enum": values, "type": "string", "title": name, "description": "An enumeration."}


def _input(properties: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "title": "Input", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def cog_openapi(model: ModelSpec, version: VersionSpec) -> dict[str, Any]:
    """The ``openapi_schema`` Cog publishes for a version (trimmed to the prediction paths)."""
    ref = {"$ref": "#/components/schemas/PredictionResponse"}
    ok = {"content": {"application/json": {"schema": ref}}, "description": "Successful Response"}
    invalid = {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
        },
        "description": "Validation Error",
    }
    request = {"$ref": "#/components/schemas/PredictionRequest"}
    predict = {
        "summary": "Predict",
        "responses": {"200": ok, "422": invalid},
        "description": "Run a single prediction on the model",
        "operationId": "predict_predictions_post",
        "requestBody": {"content": {"application/json": {"schema": request}}},
    }
    common = {
        "id": {"type": "string", "title": "Id"},
        "created_at": {"type": "string", "title": "Created At", "format": "date-time"},
    }
    hook_events = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/WebhookEvent"},
        "default": ["start", "output", "logs", "completed"],
    }
    schemas: dict[str, Any] = {
        "Input": version.input_schema or model.input_schema,
        "Output": model.output_schema,
        "Status": _enum("Status", ["starting", "processing", "succeeded", "canceled", "failed"]),
        "WebhookEvent": _enum("WebhookEvent", ["start", "output", "logs", "completed"]),
        "ValidationError": {
            "type": "object",
            "title": "ValidationError",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "title": "Location",
                },
                "msg": {"type": "string", "title": "Message"},
                "type": {"type": "string", "title": "Error Type"},
            },
        },
        "PredictionRequest": {
            "type": "object",
            "title": "PredictionRequest",
            "properties": {
                **common,
                "input": {"$ref": "#/components/schemas/Input"},
                "webhook": {"type": "string", "title": "Webhook", "format": "uri"},
                "output_file_prefix": {"type": "string", "title": "Output File Prefix"},
                "webhook_events_filter": hook_events,
            },
        },
        "PredictionResponse": {
            "type": "object",
            "title": "PredictionResponse",
            "properties": {
                **common,
                "logs": {"type": "string", "title": "Logs", "default": ""},
                "error": {"type": "string", "title": "Error"},
                "input": {"$ref": "#/components/schemas/Input"},
                "output": {"$ref": "#/components/schemas/Output"},
                "status": {"$ref": "#/components/schemas/Status"},
                "metrics": {"type": "object", "title": "Metrics"},
                "version": {"type": "string", "title": "Version"},
                "started_at": {"type": "string", "title": "Started At", "format": "date-time"},
                "completed_at": {"type": "string", "title": "Completed At", "format": "date-time"},
            },
        },
        "HTTPValidationError": {
            "type": "object",
            "title": "HTTPValidationError",
            "properties": {
                "detail": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ValidationError"},
                    "title": "Detail",
                }
            },
        },
    }
    schemas.update({name: _enum(name, values) for name, values in model.enums.items()})
    return {
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {"/predictions": {"post": predict}},
        "openapi": "3.0.2",
        "components": {"schemas": schemas},
    }


# -- the catalogue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionSpec:
    id: str
    created_at: str
    cog_version: str
    #: This version's Input schema when it differs from the model's (latest) one.
    input_schema: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ModelSpec:
    """One model as the double serves it. ``versions[0]`` is the latest."""

    owner: str
    name: str
    official: bool
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    enums: dict[str, list[str]]
    versions: tuple[VersionSpec, ...]
    kind: OutputKind
    sizer: Callable[[Mapping[str, Any]], tuple[int, int]]
    default_format: str = "png"
    nsfw_error: str = "The input or output was flagged as sensitive. (E005)"
    default_steps: int = 0
    #: Width/height must be multiples of this (diffusers fails otherwise); 0 = not checked.
    size_multiple: int = 0
    github_url: str | None = None
    paper_url: str | None = None
    license_url: str | None = None
    run_count: int = 0
    #: Inputs that carry images: the double decodes what arrives there (a data URL or a file it
    #: served) and refuses anything else with a 422, as a model would fail to open it.
    image_inputs: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def latest(self) -> VersionSpec:
        return self.versions[0]

    def find_version(self, version_id: str) -> VersionSpec | None:
        return next((v for v in self.versions if v.id == version_id), None)

    def enum_values(self, prop: Mapping[str, Any]) -> list[Any] | None:
        """The allowed values of a property, following Cog's ``allOf: [{$ref}]`` indirection."""
        if "enum" in prop:
            return list(prop["enum"])
        for part in prop.get("allOf", []):
            name = str(part.get("$ref", "")).rsplit("/", 1)[-1]
            if name in self.enums:
                return list(self.enums[name])
        return None

    def params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The effective inputs: schema defaults overlaid with what was sent."""
        props = self.input_schema["properties"]
        merged = {key: prop["default"] for key, prop in props.items() if "default" in prop}
        merged.update(given)
        return merged

    def image_count(self, params: Mapping[str, Any]) -> int:
        return int(params.get("num_outputs", 1)) if self.kind == "images" else 1

    def output_format(self, params: Mapping[str, Any]) -> str:
        fmt = str(params.get("output_format", self.default_format)).lower()
        return "jpg" if fmt == "jpeg" else fmt

    def output_size(self, params: Mapping[str, Any]) -> tuple[int, int]:
        return self.sizer(params)

    def steps(self, params: Mapping[str, Any]) -> int:
        return int(params.get("num_inference_steps", self.default_steps) or 0)

    def version_json(self, version: VersionSpec) -> dict[str, Any]:
        return {
            "id": version.id,
            "created_at": version.created_at,
            "cog_version": version.cog_version,
            "openapi_schema": cog_openapi(self, version),
        }

    def model_json(self) -> dict[str, Any]:
        return {
            "url": f"https://replicate.com/{self.ref}",
            "owner": self.owner,
            "name": self.name,
            "description": self.description,
            "visibility": "public",
            "github_url": self.github_url,
            "paper_url": self.paper_url,
            "license_url": self.license_url,
            "run_count": self.run_count,
            "cover_image_url": None,
            "default_example": None,
            "is_official": self.official,
            "created_at": self.versions[-1].created_at,
            "weights_url": None,
            "latest_version": self.version_json(self.latest),
        }


def _official_version(ref: str, created_at: str, cog_version: str = "0.13.6") -> VersionSpec:
    # Official models hide their version ("hidden" in predictions) but still have an id.
    return VersionSpec(hashlib.sha256(ref.encode()).hexdigest(), created_at, cog_version)


def _flux_size(params: Mapping[str, Any]) -> tuple[int, int]:
    width, height = FLUX_ASPECT_RATIOS[str(params.get("aspect_ratio", "1:1"))]
    if str(params.get("megapixels", "1")) == "0.25":
        return width // 2, height // 2
    return width, height


def _round32(value: int) -> int:
    return int(value / 32 + 0.5) * 32


def _flux_pro_size(params: Mapping[str, Any]) -> tuple[int, int]:
    aspect = str(params.get("aspect_ratio", "1:1"))
    if aspect == "custom":
        return _round32(int(params.get("width", 1024))), _round32(int(params.get("height", 1024)))
    return FLUX_ASPECT_RATIOS[aspect]


def _imagen_size(params: Mapping[str, Any]) -> tuple[int, int]:
    return IMAGEN_ASPECT_RATIOS[str(params.get("aspect_ratio", "1:1"))]


def _width_height(params: Mapping[str, Any]) -> tuple[int, int]:
    return int(params.get("width", 1024)), int(params.get("height", 1024))


#: Where the double puts the decoded size of the first input image among a prediction's params.
INPUT_SIZE = "__input_size"


def _kontext_size(params: Mapping[str, Any]) -> tuple[int, int]:
    """``match_input_image``: the input's own size (1024x1024 without one); else the ratio's."""
    aspect = str(params.get("aspect_ratio", "match_input_image"))
    if aspect == "match_input_image":
        size = params.get(INPUT_SIZE)
        return (int(size[0]), int(size[1])) if size else (1024, 1024)
    return FLUX_ASPECT_RATIOS[aspect]


def _fill_size(params: Mapping[str, Any]) -> tuple[int, int]:
    """Inpainting keeps the image's size."""
    size = params.get(INPUT_SIZE) or (1024, 1024)
    return int(size[0]), int(size[1])


def _text_size(params: Mapping[str, Any]) -> tuple[int, int]:
    return 0, 0


_FORMAT_DESC = "Format of the output images"
_QUALITY_DESC = (
    "Quality when saving the output images, from 0 to 100. 100 is best quality, 0 is lowest "
    "quality. Not relevant for .png outputs"
)
_SEED_DESC = "Random seed. Set for reproducible generation"
_SCHEDULERS = ["DDIM", "DPMSolverMultistep", "HeunDiscrete", "KarrasDPM", "K_EULER_ANCESTRAL"]
_SCHEDULERS += ["K_EULER", "PNDM"]
_SDXL_NSFW = "NSFW content detected. Try running it again, or try a different prompt."
_FLUX_NSFW = (
    "All generated images contained NSFW content. Try running it again with a different prompt."
)
_PRO_SIZE_DESC = (
    "{} of the generated image in text-to-image mode. Only used when aspect_ratio=custom. Must be "
    "a multiple of 32 (if it's not, it will be rounded to nearest multiple of 32). Note: Ignored "
    "in img2img and inpainting modes."
)

FLUX_SCHNELL = ModelSpec(
    owner="black-forest-labs",
    name="flux-schnell",
    official=True,
    description="The fastest image generation model tailored for local development and personal "
    "use",
    input_schema=_input(
        {
            "prompt": _str("Prompt", 0, "Prompt for generated image"),
            "aspect_ratio": _choice(
                "aspect_ratio", 1, "Aspect ratio for the generated image", "1:1"
            ),
            "num_outputs": _int("Num Outputs", 2, "Number of outputs to generate", 1, 1, 4),
            "num_inference_steps": _int(
                "Num Inference Steps",
                3,
                "Number of denoising steps. 4 is recommended, and lower "
                "number of steps produce lower quality outputs, faster.",
                4,
                1,
                4,
            ),
            "seed": _int("Seed", 4, _SEED_DESC),
            "output_format": _choice("output_format", 5, _FORMAT_DESC, "webp"),
            "output_quality": _int("Output Quality", 6, _QUALITY_DESC, 80, 0, 100),
            "disable_safety_checker": _bool(
                "Disable Safety Checker", 7, "Disable safety checker for generated images.", False
            ),
            "go_fast": _bool(
                "Go Fast",
                8,
                "Run faster predictions with model optimized for speed (currently "
                "fp8 quantized); disable to run in original bf16",
                True,
            ),
            "megapixels": _choice(
                "megapixels", 9, "Approximate number of megapixels for generated image", "1"
            ),
        },
        ["prompt"],
    ),
    output_schema=URI_LIST_OUTPUT,
    enums={
        "aspect_ratio": list(FLUX_ASPECT_RATIOS),
        "output_format": ["webp", "jpg", "png"],
        "megapixels": ["1", "0.25"],
    },
    versions=(_official_version(FLUX_SCHNELL_REF, "2024-10-28T17:40:37.162025Z", "0.9.25"),),
    kind="images",
    sizer=_flux_size,
    default_format="webp",
    nsfw_error=_FLUX_NSFW,
    default_steps=4,
    github_url="https://github.com/replicate/cog-flux",
    run_count=400_000_000,
)

FLUX_PRO = ModelSpec(
    owner="black-forest-labs",
    name="flux-1.1-pro",
    official=True,
    description="Faster, better FLUX Pro. Text-to-image model with excellent image quality, "
    "prompt adherence, and output diversity.",
    input_schema=_input(
        {
            "prompt": _str("Prompt", 0, "Text prompt for image generation"),
            "image_prompt": _str(
                "Image Prompt",
                1,
                "Image to use with Flux Redux. This is used together with the "
                "text prompt to guide the generation towards the composition of the image_prompt. "
                "Must be jpeg, png, gif, or webp.",
                uri=True,
            ),
            "aspect_ratio": _choice(
                "aspect_ratio", 2, "Aspect ratio for the generated image", "1:1"
            ),
            "width": _int("Width", 3, _PRO_SIZE_DESC.format("Width"), lo=256, hi=1440),
            "height": _int("Height", 4, _PRO_SIZE_DESC.format("Height"), lo=256, hi=1440),
            "safety_tolerance": _int(
                "Safety Tolerance",
                5,
                "Safety tolerance, 1 is most strict and 6 is most permissive",
                2,
                1,
                6,
            ),
            "seed": _int("Seed", 6, _SEED_DESC),
            "output_format": _choice("output_format", 7, _FORMAT_DESC, "webp"),
            "output_quality": _int("Output Quality", 8, _QUALITY_DESC, 80, 0, 100),
            "prompt_upsampling": _bool(
                "Prompt Upsampling",
                9,
                "Automatically modify the prompt for more creative generation",
                False,
            ),
        },
        ["prompt"],
    ),
    output_schema=URI_OUTPUT,
    enums={"aspect_ratio": FLUX_PRO_ASPECTS, "output_format": ["webp", "jpg", "png"]},
    versions=(_official_version(FLUX_PRO_REF, "2024-11-21T13:03:29.540214Z", "0.11.1"),),
    kind="image",
    sizer=_flux_pro_size,
    default_format="webp",
    run_count=40_000_000,
)

IMAGEN_4 = ModelSpec(
    owner="google",
    name="imagen-4",
    official=True,
    description="Google's Imagen 4 flagship model",
    input_schema=_input(
        {
            "prompt": _str("Prompt", 0, "Prompt for generated image"),
            "aspect_ratio": _choice(
                "aspect_ratio", 1, "Aspect ratio of the generated image", "1:1"
            ),
            "safety_filter_level": _choice(
                "safety_filter_level",
                2,
                "block_low_and_above is strictest, "
                "block_medium_and_above blocks some prompts, block_only_high is most permissive "
                "but some prompts will still be blocked",
                "block_only_high",
            ),
            "output_format": _choice("output_format", 3, "Format of the output image", "jpg"),
        },
        ["prompt"],
    ),
    output_schema=URI_OUTPUT,
    enums={
        "aspect_ratio": list(IMAGEN_ASPECT_RATIOS),
        "safety_filter_level": ["block_low_and_above", "block_medium_and_above", "block_only_high"],
        "output_format": ["jpg", "png"],
    },
    versions=(_official_version(IMAGEN_REF, "2025-05-20T17:21:48.313117Z", "0.14.10"),),
    kind="image",
    sizer=_imagen_size,
    default_format="jpg",
    run_count=5_000_000,
)

# Recorded from the real API (version 7762fd07..., cog 0.9.5, in
# test_predictions_create_blocking[True-True].yaml).
SDXL_INPUT: dict[str, Any] = _input(
    {
        "mask": _str(
            "Mask",
            3,
            "Input mask for inpaint mode. Black areas will be preserved, white areas "
            "will be inpainted.",
            uri=True,
        ),
        "seed": _int("Seed", 11, "Random seed. Leave blank to randomize the seed"),
        "image": _str("Image", 2, "Input image for img2img or inpaint mode", uri=True),
        "width": _int("Width", 4, "Width of output image", 1024),
        "height": _int("Height", 5, "Height of output image", 1024),
        "prompt": _str("Prompt", 0, "Input prompt", "An astronaut riding a rainbow unicorn"),
        "refine": _choice("refine", 12, "Which refine style to use", "no_refiner"),
        "scheduler": _choice("scheduler", 7, "scheduler", "K_EULER"),
        "lora_scale": _num(
            "Lora Scale", 16, "LoRA additive scale. Only applicable on trained models.", 0.6, 0, 1
        ),
        "num_outputs": _int("Num Outputs", 6, "Number of images to output.", 1, 1, 4),
        "refine_steps": _int(
            "Refine Steps",
            14,
            "For base_image_refiner, the number of steps to refine, defaults "
            "to num_inference_steps",
        ),
        "guidance_scale": _num(
            "Guidance Scale", 9, "Scale for classifier-free guidance", 7.5, 1, 50
        ),
        "apply_watermark": _bool(
            "Apply Watermark",
            15,
            "Applies a watermark to enable determining if an image is "
            "generated in downstream applications. If you have other provisions for generating "
            "or deploying images safely, you can use this to disable watermarking.",
            True,
        ),
        "high_noise_frac": _num(
            "High Noise Frac",
            13,
            "For expert_ensemble_refiner, the fraction of noise to use",
            0.8,
            0,
            1,
        ),
        "negative_prompt": _str("Negative Prompt", 1, "Input Negative Prompt", ""),
        "prompt_strength": _num(
            "Prompt Strength",
            10,
            "Prompt strength when using img2img / inpaint. 1.0 "
            "corresponds to full destruction of information in image",
            0.8,
            0,
            1,
        ),
        "replicate_weights": _str(
            "Replicate Weights",
            17,
            "Replicate LoRA weights to use. Leave blank to use the default weights.",
        ),
        "num_inference_steps": _int(
            "Num Inference Steps", 8, "Number of denoising steps", 50, 1, 500
        ),
        "disable_safety_checker": _bool(
            "Disable Safety Checker",
            18,
            "Disable safety checker for generated images. This "
            "feature is only available through the API. See "
            "[https://replicate.com/docs/how-does-replicate-work#safety]"
            "(https://replicate.com/docs/how-does-replicate-work#safety)",
            False,
        ),
    },
    [],
)
# The older version's schema differs in one description (a bare URL, not a Markdown link).
SDXL_OLD_INPUT: dict[str, Any] = copy.deepcopy(SDXL_INPUT)
SDXL_OLD_INPUT["properties"]["disable_safety_checker"]["description"] = (
    "Disable safety checker for generated images. This feature is only available through the "
    "API. See https://replicate.com/docs/how-does-replicate-work#safety"
)

SDXL = ModelSpec(
    owner="stability-ai",
    name="sdxl",
    official=False,
    description="A text-to-image generative AI model that creates beautiful images",
    input_schema=SDXL_INPUT,
    output_schema=URI_LIST_OUTPUT,
    enums={
        "refine": ["no_refiner", "expert_ensemble_refiner", "base_image_refiner"],
        "scheduler": _SCHEDULERS,
    },
    versions=(
        VersionSpec(SDXL_VERSION, "2024-05-23T23:26:26.222931Z", "0.9.5"),
        VersionSpec(SDXL_OLD_VERSION, "2023-11-06T23:13:07.906314Z", "0.8.6", SDXL_OLD_INPUT),
    ),
    kind="images",
    sizer=_width_height,
    default_format="png",
    nsfw_error=_SDXL_NSFW,
    default_steps=50,
    size_multiple=8,
    github_url="https://github.com/replicate/cog-sdxl",
    paper_url="https://arxiv.org/abs/2307.01952",
    run_count=66_336_540,
    image_inputs=("image", "mask"),
)

SDXL_LIGHTNING = ModelSpec(
    owner="bytedance",
    name="sdxl-lightning-4step",
    official=False,
    description="SDXL-Lightning by ByteDance: a fast text-to-image model that makes high-quality "
    "images in 4 steps",
    input_schema=_input(
        {
            "prompt": _str(
                "Prompt", 0, "Input prompt", "self-portrait of a woman, lightning in the background"
            ),
            "negative_prompt": _str(
                "Negative Prompt", 1, "Negative Input prompt", "worst quality, low quality"
            ),
            "width": _int(
                "Width", 2, "Width of output image. Recommended 1024 or 1280", 1024, 256, 1280
            ),
            "height": _int(
                "Height", 3, "Height of output image. Recommended 1024 or 1280", 1024, 256, 1280
            ),
            "num_outputs": _int("Num Outputs", 4, "Number of images to output.", 1, 1, 4),
            "scheduler": _choice("scheduler", 5, "scheduler", "K_EULER"),
            "num_inference_steps": _int(
                "Num Inference Steps", 6, "Number of denoising steps. 4 for best results", 4, 1, 10
            ),
            "guidance_scale": _num(
                "Guidance Scale", 7, "Scale for classifier-free guidance", 0, 0, 50
            ),
            "seed": _int("Seed", 8, "Random seed. Leave blank to randomize the seed", 0),
            "disable_safety_checker": _bool(
                "Disable Safety Checker", 9, "Disable safety checker for generated images", False
            ),
        },
        [],
    ),
    output_schema=URI_LIST_OUTPUT,
    enums={"scheduler": [*_SCHEDULERS, "DPM++2MSDE"]},
    versions=(VersionSpec(SDXL_LIGHTNING_VERSION, "2024-02-21T07:38:46.472392Z", "0.9.4"),),
    kind="images",
    sizer=_width_height,
    default_format="png",
    nsfw_error=_SDXL_NSFW,
    default_steps=4,
    size_multiple=8,
    run_count=1_000_000_000,
)

GRANITE = ModelSpec(
    owner="ibm-granite",
    name="granite-3.0-8b-instruct",
    official=True,
    description="Granite-3.0-8B-Instruct is a lightweight and open-source 8B parameter model",
    input_schema=_input(
        {
            "prompt": _str("Prompt", 0, "Prompt", ""),
            "system_prompt": _str(
                "System Prompt",
                1,
                "System prompt to send to the model.",
                "You are a helpful assistant.",
            ),
            "max_tokens": _int("Max Tokens", 2, "Maximum number of tokens to generate.", 512),
            "min_tokens": _int("Min Tokens", 3, "Minimum number of tokens to generate.", 0),
            "temperature": _num("Temperature", 4, "Sampling temperature.", 0.6),
            "top_p": _num("Top P", 5, "Nucleus sampling probability threshold.", 0.9),
            "top_k": _int("Top K", 6, "Number of highest probability tokens to consider.", 50),
            "stop_sequences": _str("Stop Sequences", 7, "Comma-separated stop sequences."),
            "seed": _int("Seed", 8, "Random seed. Leave unspecified to randomize."),
        },
        [],
    ),
    output_schema=TEXT_ITERATOR_OUTPUT,
    enums={},
    versions=(_official_version(GRANITE_REF, "2024-10-21T18:55:14.191393Z", "0.9.25"),),
    kind="text",
    sizer=_text_size,
    run_count=1_000_000,
)

_KONTEXT_ASPECTS = ["match_input_image", *FLUX_ASPECT_RATIOS]
_SAFETY_DESC = (
    "Safety tolerance, 0 is most strict and 6 is most permissive. 2 is currently the maximum "
    "allowed when input images are used."
)

# Shaped like black-forest-labs/flux-kontext-pro's published schema: the image goes in
# ``input_image``; ``aspect_ratio`` defaults to ``match_input_image``.
KONTEXT = ModelSpec(
    owner="black-forest-labs",
    name="flux-kontext-pro",
    official=True,
    description="A state-of-the-art text-based image editing model that delivers high-quality "
    "outputs with excellent prompt following and consistent results for transforming images "
    "through natural language",
    input_schema=_input(
        {
            "prompt": _str(
                "Prompt",
                0,
                "Text description of what you want to generate, or the instruction on how to "
                "edit the given image.",
            ),
            "input_image": _str(
                "Input Image",
                1,
                "Image to use as reference. Must be jpeg, png, gif, or webp.",
                uri=True,
            ),
            "aspect_ratio": _choice(
                "aspect_ratio",
                2,
                "Aspect ratio of the generated image. Use 'match_input_image' to match the "
                "aspect ratio of the input image.",
                "match_input_image",
            ),
            "seed": _int("Seed", 3, "Random seed. Set for reproducible generation"),
            "output_format": _choice(
                "output_format", 4, "Output format for the generated image", "png"
            ),
            "safety_tolerance": _int("Safety Tolerance", 5, _SAFETY_DESC, 2, 0, 6),
            "prompt_upsampling": _bool(
                "Prompt Upsampling", 6, "Automatic prompt improvement", False
            ),
        },
        ["prompt"],
    ),
    output_schema=URI_OUTPUT,
    enums={"aspect_ratio": _KONTEXT_ASPECTS, "output_format": ["jpg", "png"]},
    versions=(_official_version(KONTEXT_REF, "2025-05-29T17:25:57.121212Z", "0.14.4"),),
    kind="image",
    sizer=_kontext_size,
    default_format="png",
    run_count=20_000_000,
    image_inputs=("input_image",),
)

# Shaped like black-forest-labs/flux-fill-pro: ``image`` is required, ``mask`` optional.
FILL = ModelSpec(
    owner="black-forest-labs",
    name="flux-fill-pro",
    official=True,
    description="Professional inpainting and outpainting model with state-of-the-art "
    "performance. Edit or extend images with natural-looking results.",
    input_schema=_input(
        {
            "image": _str(
                "Image",
                0,
                "The image to inpaint. Can contain alpha mask. If the image width or height are "
                "not multiples of 32, they will be scaled to the closest multiple of 32. If the "
                "image dimensions don't fit within 1440x1440, it will be scaled down to fit.",
                uri=True,
            ),
            "mask": _str(
                "Mask",
                1,
                "A black-and-white image that describes the part of the image to inpaint. "
                "Black areas will be preserved while white areas will be inpainted.",
                uri=True,
            ),
            "prompt": _str("Prompt", 2, "The description of the changes you want to make."),
            "steps": _int("Steps", 3, "Number of diffusion steps.", 50, 15, 50),
            "guidance": _num(
                "Guidance",
                4,
                "Controls the balance between adherence to the text as well as image prompt and "
                "image quality/diversity.",
                60,
                1.5,
                100,
            ),
            "seed": _int("Seed", 5, "Random seed. Set for reproducible generation"),
            "output_format": _choice("output_format", 6, "Format of the output images.", "jpg"),
            "safety_tolerance": _int("Safety Tolerance", 7, _SAFETY_DESC, 2, 1, 6),
            "prompt_upsampling": _bool(
                "Prompt Upsampling",
                8,
                "Automatically modify the prompt for more creative generation",
                False,
            ),
        },
        ["image"],
    ),
    output_schema=URI_OUTPUT,
    enums={"output_format": ["jpg", "png"]},
    versions=(_official_version(FILL_REF, "2024-11-20T20:52:08.464433Z", "0.11.1"),),
    kind="image",
    sizer=_fill_size,
    default_format="jpg",
    run_count=3_000_000,
    image_inputs=("image", "mask"),
)

MODELS: dict[str, ModelSpec] = {
    m.ref: m
    for m in (FLUX_SCHNELL, FLUX_PRO, IMAGEN_4, SDXL, SDXL_LIGHTNING, GRANITE, KONTEXT, FILL)
}

#: The text the granite double "generates", as the chunks it streams.
TEXT_CHUNKS: tuple[str, ...] = ("Soft", " wool", " on", " the", " hill", "\n", "llamas", " hum", "")


def find_version(version_id: str) -> tuple[ModelSpec, VersionSpec] | None:
    """The model and version with this 64-hex id, across the whole catalogue."""
    for model in MODELS.values():
        version = model.find_version(version_id)
        if version is not None:
            return model, version
    return None
