"""Aggregate benchmark (`make bench`): consensus on 1,000 rows of 3 x ~120-word annotations on one core,
against a bare batched `SentenceTransformer.encode` of the same claims, measured in one run.

Goal (issue #6): ratio >= 0.8, i.e. splitting, clustering, validation and rendering add <= 20% over the
embedding itself. The annotations are generated from a seeded phrase grammar (artifact claims of ~17 words).
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SUBJECTS = ("fur texture,left hand,background trees,shadow of the dog,text on the sign,sky gradient,skin pores,"
            "eye reflections,window frames,road markings,leaf edges,hair strands,teeth,car wheels,brick wall").split(",")
PREDICATES = ("looks unnaturally smooth,is blurred in an inconsistent way,has distorted and warped edges,shows colour "
              "bleeding into the surroundings,falls in a direction that contradicts the light,contains repeated "
              "tile-like patterns,lacks the fine detail expected at this scale,merges with the neighbouring object,"
              "is oversaturated compared to the rest,has an impossible perspective").split(",")
PLACES = ["near the top left corner", "in the centre of the frame", "along the lower edge", "behind the main subject",
          "on the right side", "around the subject's head", "in the far background", "close to the camera"]
ADJECTIVES = "small,large,dark,bright,distant,nearby,upper,lower,second,blurry,shiny,wet".split(",")
TAILS = ["", "when viewed closely", "compared with the foreground", "as if painted", "in several places",
         "at a closer look", "more than once", "unlike the rest of the image"]


def _rows(n: int, claims_per_answer: int):
    from fakeclue_builder.records import FAKE, Row

    rng = random.Random(0)

    def claim() -> str:
        return (f"The {rng.choice(ADJECTIVES)} {rng.choice(SUBJECTS)} {rng.choice(PLACES)} {rng.choice(PREDICATES)} "
                f"{rng.choice(TAILS)}").strip()

    def answer() -> str:
        return "This is a fake image. " + ". ".join(claim() for _ in range(claims_per_answer)) + "."

    return [Row(source="bench", source_path=f"/b/{i}", label=FAKE, image_id=f"{i:064x}", cate="object",
                annotations=[{"annotator": a, "text": answer(), "ok": True} for a in ("qwen2_vl", "internvl", "deepseek_vl2")])
            for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--claims-per-answer", type=int, default=7)
    parser.add_argument("--shard", type=int, default=1000, help="Rows per stage call (the runner's shard size).")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from fakeclue_builder.aggregate import AggregateStage
    from fakeclue_builder.config import AggregateConfig
    from fakeclue_builder.consensus import split_claims

    rows = _rows(args.n, args.claims_per_answer)
    words = sum(len(a["text"].split()) for r in rows for a in r.annotations) / (3 * args.n)
    claims = [c for r in rows for a in r.annotations for c in split_claims(a["text"])]
    unique = list(dict.fromkeys(claims))  # the stage embeds each distinct claim once: so does the baseline
    stage = AggregateStage(AggregateConfig(), run_dir=".")
    model = stage._consensus().embedder._load()
    model.encode(claims[:128], batch_size=64)  # warm-up
    start = time.perf_counter()
    model.encode(unique, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
    bare = time.perf_counter() - start
    start = time.perf_counter()
    out = []
    for i in range(0, len(rows), args.shard):
        out += list(stage(rows[i : i + args.shard]))
    staged = time.perf_counter() - start
    kept = sum(r.kept for r in out)
    print(f"== aggregate (consensus), one thread: {args.n} rows x 3 answers of ~{words:.0f} words, {len(claims)} claims "
          f"({len(unique)} distinct)")
    print(f"bare SentenceTransformer.encode   {bare:7.1f} s   {args.n / bare:6.1f} rows/s   {len(unique) / bare:6.0f} claims/s"
          "   (the distinct claims, batch 64)")
    print(f"aggregate stage                   {staged:7.1f} s   {args.n / staged:6.1f} rows/s   ({kept} captions)")
    print(f"ratio stage/bare speed: {bare / staged:.2f}   (goal >= 0.8)")


if __name__ == "__main__":
    main()
