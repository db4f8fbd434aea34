"""Writes the checkpoints `cohost import` is tested against, with PyTorch's own outputs.

Run by `scripts/make-import-fixtures.sh` (which makes the virtualenv); writes into
`models/tests/fixtures/import/` (or the folder given as the first argument):

  NAME.pt | NAME.safetensors   the checkpoint, random weights, tiny shapes
  NAME.json                    the import flags, 5 rows of inputs (cohost's layout:
                               `dense` [rows, dense_features], `sparse` [rows, sum of
                               multi_hot], table by table) and PyTorch's `prediction`

Where the modules come from:

- the reference DLRM (facebookresearch/dlrm, `dlrm_s_pytorch.py`) is not a package, so
  `ReferenceDlrm` below rebuilds its `DLRM_Net` for inference with `torch.nn`, with the
  same module names (`emb_l`, `bot_l`, `top_l`: `nn.Sequential` of Linear with ReLU or
  Sigmoid between), the same `interact_features` (dot with or without
  `interaction_itself`, cat) and the same checkpoint dict (`{"state_dict": ...}`);
- TorchRec's `DLRM` and `DLRM_DCN` are TorchRec's own classes (`torchrec.models.dlrm`),
  with the MLPerf training wrapper's `model.` prefix on some; the prediction is
  `sigmoid(logits)` as `DLRMTrain` computes it.
"""

import json
import os
import sys

import torch
from torch import nn

ROWS = 5


class ReferenceDlrm(nn.Module):
    """`DLRM_Net` of dlrm_s_pytorch.py at inference (sum-pooled EmbeddingBags, no QR/MD)."""

    def __init__(self, m_spa, ln_emb, ln_bot, ln_top, arch_interaction_op,
                 arch_interaction_itself=False):
        super().__init__()
        self.arch_interaction_op = arch_interaction_op
        self.arch_interaction_itself = arch_interaction_itself
        self.emb_l = nn.ModuleList(nn.EmbeddingBag(n, m_spa, mode="sum") for n in ln_emb)
        self.bot_l = self.create_mlp(ln_bot, -1)
        self.top_l = self.create_mlp(ln_top, len(ln_top) - 2)

    @staticmethod
    def create_mlp(ln, sigmoid_layer):
        layers = nn.ModuleList()
        for i in range(len(ln) - 1):
            layers.append(nn.Linear(int(ln[i]), int(ln[i + 1]), bias=True))
            layers.append(nn.Sigmoid() if i == sigmoid_layer else nn.ReLU())
        return nn.Sequential(*layers)

    def interact_features(self, x, ly):
        if self.arch_interaction_op == "dot":
            (batch_size, d) = x.shape
            T = torch.cat([x] + ly, dim=1).view((batch_size, -1, d))
            Z = torch.bmm(T, torch.transpose(T, 1, 2))
            _, ni, nj = Z.shape
            offset = 1 if self.arch_interaction_itself else 0
            li = torch.tensor([i for i in range(ni) for j in range(i + offset)])
            lj = torch.tensor([j for i in range(nj) for j in range(i + offset)])
            Zflat = Z[:, li, lj]
            return torch.cat([x] + [Zflat], dim=1)
        if self.arch_interaction_op == "cat":
            return torch.cat([x] + ly, dim=1)
        raise ValueError(self.arch_interaction_op)

    def forward(self, dense_x, lS_o, lS_i):
        x = self.bot_l(dense_x)
        ly = [emb(lS_i[k], lS_o[k]) for k, emb in enumerate(self.emb_l)]
        return self.top_l(self.interact_features(x, ly))


def randomize(model, gen, scale=0.5):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * scale)


def inputs(gen, dense_features, table_sizes, multi_hot):
    dense = torch.rand((ROWS, dense_features), generator=gen)
    bags = [torch.randint(0, n, (ROWS, h), generator=gen) for n, h in zip(table_sizes, multi_hot)]
    return dense, bags


def cohost_sparse(bags):
    return torch.cat(bags, dim=1).tolist()


def write_json(out, name, flags, dense, bags, prediction):
    doc = {
        "flags": flags,
        "dense": dense.tolist(),
        "sparse": cohost_sparse(bags),
        "prediction": prediction.detach().to(torch.float64).reshape(ROWS, 1).tolist(),
    }
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(doc, f, indent=None)
        f.write("\n")


def reference(out, name, op, itself, half=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dense_features, dim = 4, 4
    table_sizes, multi_hot = [10, 7, 5], [2, 1, 3]
    n_f = len(table_sizes) + 1
    if op == "cat":
        width = n_f * dim
    else:
        pairs = n_f * (n_f + 1) // 2 if itself else n_f * (n_f - 1) // 2
        width = dim + pairs
    model = ReferenceDlrm(dim, table_sizes, [dense_features, 8, dim], [width, 6, 1], op, itself)
    randomize(model, gen)
    if half:
        model = model.half()
    state = model.state_dict()
    # What dlrm_s_pytorch.py's --save-model writes: a dict around the state_dict.
    torch.save({"epoch": 0, "nepochs": 1, "nbatches": 10, "iter": 10,
                "state_dict": state, "train_acc": 0.5, "train_loss": 0.7}, os.path.join(out, name + ".pt"))
    dense, bags = inputs(gen, dense_features, table_sizes, multi_hot)
    # PyTorch's output from the stored weights (fp16 ones widened to f32 to run).
    model = model.float().eval()
    offsets = [torch.arange(0, ROWS * h, h) for h in multi_hot]
    flat = [b.reshape(-1) for b in bags]
    with torch.no_grad():
        prediction = model(dense, offsets, flat)
    flags = {"layout": "reference", "multi_hot": multi_hot}
    write_json(out, name, flags, dense, bags, prediction)


def torchrec_model(dcn, seed):
    from torchrec.models.dlrm import DLRM, DLRM_DCN
    from torchrec.modules.embedding_configs import EmbeddingBagConfig
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    gen = torch.Generator().manual_seed(seed)
    dim = 4
    # Names whose sorted order is not the model's order: the importer must be told it.
    tables = [("t_user", 9), ("t_item", 6), ("t_ad", 11)]
    configs = [EmbeddingBagConfig(name=t, embedding_dim=dim, num_embeddings=n,
                                  feature_names=["f" + t[1:]]) for t, n in tables]
    ebc = EmbeddingBagCollection(tables=configs, device=torch.device("cpu"))
    if dcn:
        model = DLRM_DCN(embedding_bag_collection=ebc, dense_in_features=5,
                         dense_arch_layer_sizes=[8, dim], over_arch_layer_sizes=[6, 1],
                         dcn_num_layers=2, dcn_low_rank_dim=3, dense_device=torch.device("cpu"))
    else:
        model = DLRM(embedding_bag_collection=ebc, dense_in_features=5,
                     dense_arch_layer_sizes=[8, dim], over_arch_layer_sizes=[6, 1],
                     dense_device=torch.device("cpu"))
    randomize(model, gen)
    return model, gen, tables


class Wrapper(nn.Module):
    """The `model.` prefix MLPerf's DLRMTrain (and DataParallel-like wrappers) add."""

    def __init__(self, model):
        super().__init__()
        self.model = model


def torchrec(out, name, dcn, prefixed, safetensors_file, seed):
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    model, gen, tables = torchrec_model(dcn, seed)
    multi_hot = [1, 3, 2]
    state = (Wrapper(model) if prefixed else model).state_dict()
    if safetensors_file:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(out, name + ".safetensors"))
    else:
        torch.save(state, os.path.join(out, name + ".pt"))
    dense, bags = inputs(gen, 5, [n for _, n in tables], multi_hot)
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=["f" + t[1:] for t, _ in tables],
        values=torch.cat([b.reshape(-1) for b in bags]),
        lengths=torch.cat([torch.full((ROWS,), h, dtype=torch.int64) for h in multi_hot]),
    )
    model.eval()
    with torch.no_grad():
        prediction = torch.sigmoid(model(dense, kjt))
    flags = {"layout": "torchrec", "tables": [t for t, _ in tables], "multi_hot": multi_hot}
    write_json(out, name, flags, dense, bags, prediction)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "models/tests/fixtures/import"
    os.makedirs(out, exist_ok=True)
    reference(out, "reference-dot", "dot", False, seed=1)
    reference(out, "reference-itself", "dot", True, seed=2)
    reference(out, "reference-cat", "cat", False, seed=3)
    reference(out, "reference-fp16", "dot", False, half=True, seed=4)
    torchrec(out, "torchrec-dlrm", dcn=False, prefixed=True, safetensors_file=False, seed=5)
    torchrec(out, "torchrec-dlrm-plain", dcn=False, prefixed=False, safetensors_file=True, seed=6)
    torchrec(out, "torchrec-dcn", dcn=True, prefixed=True, safetensors_file=False, seed=7)
    print("torch", torch.__version__)
    import torchrec as tr
    print("torchrec", getattr(tr, "__version__", "?"))
    for f in sorted(os.listdir(out)):
        print(f, os.path.getsize(os.path.join(out, f)))


if __name__ == "__main__":
    main()
