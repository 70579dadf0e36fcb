"""Build a tiny random Stable Diffusion (UNet, CLIP text encoder and tokenizer, VAE, DDPM scheduler) and a
tiny captioned image folder locally (nothing downloaded), for the real trainers' scripts:

    python tests/data/field/tiny_sd.py MODEL_DIR DATA_DIR

Run with the field venv's Python (diffusers, transformers, torch; tests/data/field/README.md). MODEL_DIR is a
`StableDiffusionPipeline.save_pretrained` folder (what `--pretrained_model_name_or_path` takes); DATA_DIR is
the `imagefolder` layout (`metadata.jsonl` with `file_name` and `text`, what `--train_data_dir` takes). The
weights are random: the runs are followed for their progress, never for what they learn.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def byte_alphabet() -> list[str]:
    """CLIP's byte-to-unicode table (the 256 characters its byte-level BPE starts from)."""
    points = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = points[:]
    extra = 0
    for byte in range(256):
        if byte not in points:
            points.append(byte)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def tokenizer_files(out: Path) -> None:
    """vocab.json and merges.txt of a tiny CLIP BPE: the bytes, the bytes ending a word, a few merges."""
    alphabet = byte_alphabet()
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges = ["p h", "o t", "ph ot", "phot o</w>"]  # 'photo'
    for merge in merges:
        vocab.append(merge.replace(" ", ""))
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def build(model: Path, data: Path) -> None:
    import numpy as np
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    raw = model.parent / (model.name + "-tokenizer-files")
    tokenizer_files(raw)
    tokenizer = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
    ))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(32,), latent_channels=4, norm_num_groups=32, sample_size=16,
    )
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False)
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(model)

    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for index in range(8):
        pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / f"{index}.png")
        rows.append(json.dumps({"file_name": f"{index}.png", "text": "a photo"}))
    (data / "metadata.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: tiny_sd.py MODEL_DIR DATA_DIR")
    build(Path(sys.argv[1]), Path(sys.argv[2]))
