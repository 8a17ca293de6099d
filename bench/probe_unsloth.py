"""Probe Unsloth's vision API on a tiny Qwen2.5-VL on the GPU machine (the facts the backend relies on).

One mode per process, because Unsloth patches transformers globally once imported:

    python bench/probe_unsloth.py --mode lora --dtype float32 --model M --data D --out R.json --work W
    python bench/probe_unsloth.py --mode full --dtype bfloat16 ...
    python bench/probe_unsloth.py --mode plain --dtype float32 ...   # transformers + PEFT only, no unsloth

lora: load, get_peft_model (4 flags), a saved batch's loss, 3 SFTTrainer steps, generation after for_inference,
save_pretrained (adapter), save_pretrained_merged (merged_16bit), reload of the adapter with FastVisionModel.
plain: the same batch's loss from the base model in plain transformers, the adapter reloaded with PEFT.
"""

import argparse
import json
import os
import sys
import time
import traceback

ap = argparse.ArgumentParser()
ap.add_argument("--mode", choices=["lora", "full", "plain"], required=True)
ap.add_argument("--dtype", default="float32")
ap.add_argument("--model", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--optim", default="adamw_torch")
args = ap.parse_args()
R = {"mode": args.mode, "dtype": args.dtype, "steps": {}}
T0 = time.time()


def step(name, fn):
    t = time.time()
    try:
        R["steps"][name] = {"ok": True, "value": fn()}
    except Exception as exc:  # a probe records every failure and goes on
        R["steps"][name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                            "trace": traceback.format_exc()[-3000:]}
    R["steps"][name]["s"] = round(time.time() - t, 2)
    print(f"[probe] {name}: {json.dumps(R['steps'][name])[:600]}", flush=True)
    with open(args.out, "w") as f:
        json.dump(R, f, indent=1, default=str)


if args.mode != "plain":
    step("import_unsloth", lambda: __import__("unsloth").__version__)
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_dataset import conversations  # noqa: E402

DTYPE = getattr(torch, args.dtype)
os.makedirs(args.work, exist_ok=True)
rows = conversations(args.data)[:16]
batch_file = os.path.join(args.work, "batch.pt")

if args.mode in ("lora", "full"):
    from unsloth import FastVisionModel
    from unsloth.trainer import UnslothVisionDataCollator

    S = {}

    def load():
        S["model"], S["proc"] = FastVisionModel.from_pretrained(
            args.model, max_seq_length=2048, dtype=DTYPE, load_in_4bit=False,
            load_in_16bit=args.mode == "lora", full_finetuning=args.mode == "full",
            use_gradient_checkpointing="unsloth", random_state=3407)
        m = S["model"]
        return {"type": type(m).__name__, "dtype": str(m.dtype), "proc": type(S["proc"]).__name__,
                "device": str(next(m.parameters()).device)}

    step("from_pretrained", load)

    def peft():
        if args.mode == "lora":
            S["model"] = FastVisionModel.get_peft_model(
                S["model"], finetune_vision_layers=True, finetune_language_layers=True,
                finetune_attention_modules=True, finetune_mlp_modules=True, r=16, lora_alpha=16,
                lora_dropout=0.0, bias="none", random_state=3407, use_rslora=False)
        names = [n for n, p in S["model"].named_parameters() if p.requires_grad]
        return {"type": type(S["model"]).__name__, "n_trainable_tensors": len(names), "first": names[:6],
                "trainable": sum(p.numel() for p in S["model"].parameters() if p.requires_grad),
                "peft_config": str(getattr(S["model"], "peft_config", {}).get("default", ""))[:1500]}

    step("get_peft_model", peft)

    def collate():
        S["collator"] = UnslothVisionDataCollator(S["model"], S["proc"], train_on_responses_only=True,
                                                  instruction_part="<|im_start|>user\n",
                                                  response_part="<|im_start|>assistant\n",
                                                  max_seq_length=2048, resize=512)
        b = S["collator"](rows[:4])
        torch.save({k: v for k, v in b.items() if torch.is_tensor(v)}, batch_file)
        return {k: [list(v.shape), str(v.dtype)] for k, v in b.items() if torch.is_tensor(v)} | {
            "n_labels": int((b["labels"] != -100).sum())}

    step("collator", collate)

    def first_loss():
        FastVisionModel.for_training(S["model"])
        b = torch.load(batch_file)
        b = {k: v.to(S["model"].device) for k, v in b.items()}
        out = S["model"](**b)
        return float(out.loss)

    step("first_loss_forward", first_loss)

    def train():
        from trl import SFTConfig, SFTTrainer

        t = []
        from transformers import TrainerCallback

        class CB(TrainerCallback):
            def on_step_end(self, a, s, c, **k):
                t.append(time.time())

        FastVisionModel.for_training(S["model"])
        tr = SFTTrainer(model=S["model"], processing_class=S["proc"], data_collator=S["collator"],
                        train_dataset=rows, callbacks=[CB()],
                        args=SFTConfig(per_device_train_batch_size=4, gradient_accumulation_steps=1,
                                       max_steps=3, learning_rate=2e-4, logging_steps=1, optim=args.optim,
                                       seed=3407, output_dir=os.path.join(args.work, "out"), report_to="none",
                                       bf16=DTYPE == torch.bfloat16, fp16=DTYPE == torch.float16,
                                       remove_unused_columns=False, dataset_text_field="",
                                       dataset_kwargs={"skip_prepare_dataset": True}, max_length=2048,
                                       save_strategy="no"))
        t0 = time.time()
        tr.train()
        return {"losses": [h["loss"] for h in tr.state.log_history if "loss" in h],
                "step_ends_rel": [round(x - t0, 2) for x in t], "trainer": type(tr).__name__,
                "mro": [c.__name__ for c in type(tr).__mro__][:6]}

    step("train", train)

    def infer():
        FastVisionModel.for_inference(S["model"])
        msgs = rows[0]["messages"][:1]
        text = S["proc"].apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        enc = S["proc"](text=[text], images=[msgs[0]["content"][1]["image"]], return_tensors="pt").to(
            S["model"].device)
        out = S["model"].generate(**enc, max_new_tokens=8, do_sample=False)
        return S["proc"].tokenizer.decode(out[0, enc["input_ids"].shape[1]:])

    step("generate", infer)

    def save():
        d = os.path.join(args.work, "adapter")
        S["model"].save_pretrained(d)
        S["proc"].save_pretrained(d)
        return sorted(os.listdir(d))

    step("save_pretrained", save)

    def merged():
        d = os.path.join(args.work, "merged")
        S["model"].save_pretrained_merged(d, S["proc"], save_method="merged_16bit")
        return sorted(os.listdir(d))

    step("save_pretrained_merged", merged)

    if args.mode == "lora":
        def reload():
            m, p = FastVisionModel.from_pretrained(os.path.join(args.work, "adapter"), load_in_4bit=False,
                                                   dtype=DTYPE)
            return {"type": type(m).__name__, "has_peft": hasattr(m, "peft_config")}

        step("reload_fastvision", reload)

else:  # plain transformers + PEFT: the same batch's loss, and the adapter reloaded without unsloth
    from transformers import AutoModelForImageTextToText, AutoProcessor

    def plain_loss():
        m = AutoModelForImageTextToText.from_pretrained(args.model, dtype=DTYPE).cuda()
        b = {k: v.cuda() for k, v in torch.load(batch_file).items()}
        with torch.no_grad():
            return float(m(**b).loss)

    step("plain_loss", plain_loss)

    def plain_reload():
        from peft import PeftModel

        base = AutoModelForImageTextToText.from_pretrained(args.model, dtype=DTYPE).cuda()
        m = PeftModel.from_pretrained(base, os.path.join(args.work, "adapter"))
        p = AutoProcessor.from_pretrained(os.path.join(args.work, "adapter"))
        b = {k: v.cuda() for k, v in torch.load(batch_file).items()}
        with torch.no_grad():
            loss = float(m(**b).loss)
        merged = AutoModelForImageTextToText.from_pretrained(os.path.join(args.work, "merged"), dtype=DTYPE).cuda()
        with torch.no_grad():
            mloss = float(merged(**b).loss)
        return {"adapter_loss": loss, "merged_loss": mloss, "proc": type(p).__name__}

    step("plain_reload", plain_reload)

R["total_s"] = round(time.time() - T0, 1)
with open(args.out, "w") as f:
    json.dump(R, f, indent=1, default=str)
