"""A character-level LSTM language model trained in a plain NumPy loop with fastrnn.

    python examples/char_rnn.py                  # the full run: 1 to 3 minutes on 2 cores
    python examples/char_rnn.py --steps 50       # a quick look
    python examples/char_rnn.py --torch          # the same model and loop with fastrnn.torch
    python examples/char_rnn.py --threads 1      # on a machine busy with other work

Model: embedding (V, E) -> fastrnn.LSTM(E, H) -> linear (H -> V) -> log-softmax cross-entropy,
on the characters of examples/data/declaration_of_independence.txt (public domain). The last
10% of the text is held out for the validation loss. Each step draws `batch` random windows of
`seq` characters, runs forward and backward by hand (the LSTM's backward is fastrnn's), clips
the gradient norm with fastrnn.clip_grad_norm and takes an Adam step. At the end it prints the
loss curve and a sample generated one character at a time, carrying the LSTM state (h, c).

Losses are in nats per character; a uniform guess over the V characters scores ln V (about 4.1).
The default run takes the training loss below 0.8; the held-out loss bottoms out near 1.95 after
about 250 steps and then rises, as 8 KB of text is memorised rather than generalised from.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

import fastrnn

DATA = Path(__file__).resolve().parent / "data" / "declaration_of_independence.txt"


# ---- data -----------------------------------------------------------------------------------

class Text:
    """The corpus as integer ids; `windows` draws random (inputs, targets) pairs, time-major."""

    def __init__(self, path: Path, held_out: float = 0.1) -> None:
        text = path.read_text(encoding="ascii")
        self.chars = sorted(set(text))
        self.index = {ch: i for i, ch in enumerate(self.chars)}
        ids = np.array([self.index[ch] for ch in text], dtype=np.int64)
        split = int(len(ids) * (1 - held_out))
        self.train, self.valid = ids[:split], ids[split:]

    @property
    def vocab(self) -> int:
        return len(self.chars)

    def windows(self, rng: np.random.Generator, batch: int, seq: int) -> tuple[np.ndarray, ...]:
        """inputs, targets: (seq, batch) ids, targets one character ahead."""
        starts = rng.integers(0, len(self.train) - seq - 1, size=batch)
        rows = np.stack([self.train[s:s + seq + 1] for s in starts], axis=1)
        return rows[:-1], rows[1:]

    def encode(self, s: str) -> np.ndarray:
        return np.array([self.index[ch] for ch in s], dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)


# ---- the NumPy model: embedding -> fastrnn.LSTM -> linear -----------------------------------

def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class CharLSTM:
    """Parameters in `params`, gradients in `grads` (the LSTM's under its torch names)."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int,
                 rng: np.random.Generator) -> None:
        self.lstm = fastrnn.LSTM(embed, hidden, num_layers=layers, seed=int(rng.integers(2**31)))
        dtype = next(iter(self.lstm.state_dict().values())).dtype
        bound = 1 / math.sqrt(hidden)
        self.head = {
            "embedding": rng.normal(0.0, 1.0, (vocab, embed)).astype(dtype),
            "out_weight": rng.uniform(-bound, bound, (vocab, hidden)).astype(dtype),
            "out_bias": np.zeros(vocab, dtype),
        }
        self.params = {**self.head, **self.lstm.state_dict()}

    def forward(self, ids: np.ndarray, state: Any = None, training: bool = True):
        """ids (T, B) -> log-probabilities (T, B, V) and the LSTM's final (h, c)."""
        x = self.head["embedding"][ids]                               # (T, B, E)
        self._y, state = self.lstm.forward(x, state, training=training)  # (T, B, H)
        logits = self._y @ self.head["out_weight"].T + self.head["out_bias"]
        return log_softmax(logits), state

    def loss_and_backward(self, ids: np.ndarray, targets: np.ndarray) -> float:
        """Mean cross-entropy of next-character prediction; fills self.grads."""
        logp, _ = self.forward(ids)
        t, b = targets.shape
        steps, rows = np.arange(t)[:, None], np.arange(b)[None, :]
        loss = -float(logp[steps, rows, targets].mean())
        dlogits = np.exp(logp)                                # d(loss)/d(logits) = softmax - onehot
        dlogits[steps, rows, targets] -= 1
        dlogits /= t * b
        flat = dlogits.reshape(t * b, -1)
        grads = {"out_weight": flat.T @ self._y.reshape(t * b, -1), "out_bias": flat.sum(0)}
        dy = dlogits @ self.head["out_weight"]                        # (T, B, H)
        self.lstm.zero_grad()
        dx, _ = self.lstm.backward(dy)
        grads["embedding"] = np.zeros_like(self.head["embedding"])
        np.add.at(grads["embedding"], ids, dx)
        self.grads = {**grads, **self.lstm.grads}
        return loss

    def load(self, params: dict[str, np.ndarray]) -> None:
        """Take updated parameters (the Adam step works on copies)."""
        self.head.update({k: params[k] for k in self.head})
        self.lstm.load_state_dict({k: v for k, v in params.items() if k not in self.head})


class Adam:
    """Adam (Kingma & Ba) over a dict of NumPy arrays, updated in place."""

    def __init__(self, params: dict[str, np.ndarray], lr: float, betas=(0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        b1, b2 = self.betas
        self.t += 1
        scale = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for k, p in self.params.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * grads[k]
            self.v[k] = b2 * self.v[k] + (1 - b2) * grads[k] ** 2
            p -= (scale * self.m[k] / (np.sqrt(self.v[k]) + self.eps)).astype(p.dtype)


def numpy_trainer(text: Text, args: argparse.Namespace, rng: np.random.Generator):
    """step(ids, targets) -> loss, evaluate(ids, targets) -> loss, sample(prompt, n) -> str."""
    model = CharLSTM(text.vocab, args.embed, args.hidden, args.layers, rng)
    adam = Adam(model.params, args.lr)

    def step(ids: np.ndarray, targets: np.ndarray) -> float:
        loss = model.loss_and_backward(ids, targets)
        fastrnn.clip_grad_norm(model.grads, args.clip)
        adam.step(model.grads)
        model.load(model.params)
        return loss

    def evaluate(ids: np.ndarray, targets: np.ndarray) -> float:
        logp, _ = model.forward(ids, training=False)
        return -float(np.take_along_axis(logp, targets[..., None], axis=-1).mean())

    def next_logp(ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        logp, state = model.forward(ids[:, None], state, training=False)
        return logp[-1, 0], state

    return step, evaluate, next_logp


# ---- the same model in a torch loop, with fastrnn.torch.LSTM ---------------------------------

def torch_trainer(text: Text, args: argparse.Namespace, rng: np.random.Generator):
    import torch
    import fastrnn.torch as frt

    torch.manual_seed(int(rng.integers(2 ** 31)))

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(text.vocab, args.embed)
            self.lstm = frt.LSTM(args.embed, args.hidden, num_layers=args.layers)
            self.out = torch.nn.Linear(args.hidden, text.vocab)

        def forward(self, ids, state=None):
            y, state = self.lstm(self.embedding(ids), state)
            return torch.log_softmax(self.out(y), dim=-1), state

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    def nll(ids: np.ndarray, targets: np.ndarray):
        logp, _ = model(torch.from_numpy(ids))
        return torch.nn.functional.nll_loss(logp.reshape(-1, text.vocab),
                                            torch.from_numpy(targets).reshape(-1))

    def step(ids: np.ndarray, targets: np.ndarray) -> float:
        opt.zero_grad()
        loss = nll(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        return loss.item()

    @torch.no_grad()
    def evaluate(ids: np.ndarray, targets: np.ndarray) -> float:
        return nll(ids, targets).item()

    @torch.no_grad()
    def next_logp(ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        logp, state = model(torch.from_numpy(ids[:, None]), state)
        return logp[-1, 0].numpy(), state

    return step, evaluate, next_logp


# ---- the loop -------------------------------------------------------------------------------

def progress(total: int) -> Callable[[float], None]:
    """A callback that advances a progress bar by one step and shows the loss: tqdm when it is
    installed, else a plain text bar on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = tqdm(total=total, unit="step")

        def update(loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(1)
            if bar.n == total:
                bar.close()
        return update

    start, done = time.perf_counter(), [0]

    def update(loss: float) -> None:
        done[0] += 1
        n = done[0]
        if n == total or n % max(1, total // 100) == 0:
            filled = 30 * n // total
            rate = n / max(time.perf_counter() - start, 1e-9)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {n}/{total} "
                             f"loss {loss:.3f}  {rate:.1f} step/s")
            if n == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
    return update


def sample(next_logp: Callable, text: Text, prompt: str, length: int, temperature: float,
           rng: np.random.Generator) -> str:
    """Feed the prompt, then draw `length` characters one at a time, carrying the state."""
    logp, state = None, None
    for i in text.encode(prompt):
        logp, state = next_logp(np.array([i]), state)
    out = []
    for _ in range(length):
        p = np.exp((logp - logp.max()) / temperature)
        i = int(rng.choice(len(p), p=p / p.sum()))
        out.append(i)
        logp, state = next_logp(np.array([i]), state)
    return prompt + text.decode(out)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps")
    parser.add_argument("--batch", type=int, default=32, help="windows per step")
    parser.add_argument("--seq", type=int, default=64, help="characters per window")
    parser.add_argument("--embed", type=int, default=32, help="embedding size")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM hidden size")
    parser.add_argument("--layers", type=int, default=1, help="LSTM layers")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument("--clip", type=float, default=1.0, help="max gradient norm")
    parser.add_argument("--sample", type=int, default=300, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    parser.add_argument("--threads", type=int, default=0,
                        help="kernel threads (fastrnn.set_num_threads); 0: fastrnn's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch", action="store_true",
                        help="train the same model with fastrnn.torch.LSTM in a torch loop")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    """Train, print the loss curve and a sample; return them (for tests)."""
    args = parse_args(argv)
    if args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    if args.threads:
        fastrnn.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    text = Text(DATA)
    make = torch_trainer if args.torch else numpy_trainer
    step, evaluate, next_logp = make(text, args, rng)
    valid_ids, valid_targets = text.valid[:-1, None], text.valid[1:, None]
    print(f"{len(text.train)} training and {len(text.valid)} held-out characters, "
          f"vocabulary {text.vocab} (ln V = {math.log(text.vocab):.2f}); "
          f"{'torch loop, fastrnn.torch.LSTM' if args.torch else 'NumPy loop, fastrnn.LSTM'}, "
          f"hidden {args.hidden}, {args.layers} layer(s), batch {args.batch} x {args.seq}")

    checkpoints = sorted({max(1, round(args.steps * k / 10)) for k in range(1, 11)})
    curve, losses, recent = [], [], []
    update = progress(args.steps)
    start = time.perf_counter()
    for n in range(1, args.steps + 1):
        ids, targets = text.windows(rng, args.batch, args.seq)
        loss = step(ids, targets)
        losses.append(loss)
        recent.append(loss)
        update(loss)
        if n in checkpoints:
            curve.append((n, float(np.mean(recent)), evaluate(valid_ids, valid_targets),
                          time.perf_counter() - start))
            recent = []
    elapsed = time.perf_counter() - start

    print(f"\n{'step':>6} {'train loss':>11} {'held-out':>9} {'time (s)':>9}")
    for n, train, valid, seconds in curve:
        print(f"{n:>6} {train:>11.3f} {valid:>9.3f} {seconds:>9.1f}")
    print(f"trained {args.steps} steps in {elapsed:.1f} s")
    text_out = sample(next_logp, text, "When in the Course", args.sample, args.temperature, rng)
    print("\nsample:\n" + text_out)
    return {"losses": losses, "curve": curve, "sample": text_out, "seconds": elapsed}


if __name__ == "__main__":
    main()
