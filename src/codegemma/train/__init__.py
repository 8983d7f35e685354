"""Training: continued pretraining on FIM shards, SFT on chat data, LoRA; torchrun + FSDP2 to scale out."""
