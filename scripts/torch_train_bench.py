#!/usr/bin/python3
"""PyTorch CPU training throughput for `npm run bench:train` (bench/train.ts).

Builds the same decoder-only MoE LM as src/train/model.ts (pre-norm RMSNorm, q/k/v [+ biases],
optional full QK-norm, NeoX RoPE, causal attention, softmax/sigmoid top-k router with optional
renormalisation, dropless SwiGLU experts gathered per expert, optional sigmoid-gated shared
expert, LB + z losses, tied or untied output) in float32 and times AdamW steps with global-norm
clipping on random tokens, with torch.set_num_threads(threads).

    /usr/bin/python3 scripts/torch_train_bench.py '<json>'
    json: {"model": {... ModelConfig with vocab ...}, "B": 16, "threads": 2, "seconds": 3, "minSteps": 2, "warmup": 1,
           "optim": {"lr": 3e-3, "beta1": 0.9, "beta2": 0.95, "weightDecay": 0.1, "gradClip": 1.0}}
Prints one JSON line: {"tokS": ..., "seconds": ..., "steps": ..., "loss": ...}.
Not supported here (the bench configs do not use them): top-p, null experts, capacity, bias balancing.
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as Fn


def resolve(c):
    """model.fineGrained m: E·m experts of ffnDim/m, top-(K·m) (src/train/model.ts resolveModelConfig)."""
    c = dict(c)
    r = dict(c.get('router') or {'scoring': 'softmax', 'K': 1, 'normalize': False})
    m = c.pop('fineGrained', 1) or 1
    if c['nExpert'] > 0 and m > 1:
        c['nExpert'] *= m
        c['ffnDim'] //= m
        r['K'] *= m
    c['router'] = r
    return c


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.w = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.w


def lin(o, i, std):
    return nn.Parameter(torch.randn(o, i) * std)


class MoE(nn.Module):
    def __init__(self, c, std, rstd):
        super().__init__()
        D, E, F = c['dim'], c['nExpert'], c['ffnDim']
        self.c, self.r = c, c['router']
        self.router = lin(E, D, std)
        # one Parameter per expert (as HF Mixtral's ModuleList of experts), so autograd never
        # materialises full [E, F, D] gradients for a per-expert slice
        self.gate = nn.ParameterList([lin(F, D, std) for _ in range(E)])
        self.up = nn.ParameterList([lin(F, D, std) for _ in range(E)])
        self.down = nn.ParameterList([lin(D, F, rstd) for _ in range(E)])
        Fs = c.get('sharedDim') or 0
        self.shared = None
        if Fs:
            self.shared = nn.ParameterList([lin(Fs, D, std), lin(Fs, D, std), lin(D, Fs, rstd)])
            self.sgate = nn.Parameter(torch.zeros(D)) if c.get('sharedGate') else None

    def forward(self, x):
        T, D = x.shape
        E, K = self.c['nExpert'], self.r['K']
        logits = x @ self.router.T
        scores = torch.softmax(logits, -1) if self.r['scoring'] == 'softmax' else torch.sigmoid(logits)
        w, ids = torch.topk(scores, K, dim=-1)
        if self.r.get('normalize'):
            w = w / w.sum(-1, keepdim=True)
        w = w * self.r.get('scale', 1)
        out = torch.zeros_like(x)
        flat = ids.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=E)
        tok = order // K
        wf = w.reshape(-1)[order]
        start = 0
        for e, n in enumerate(counts.tolist()):
            if n == 0:
                continue
            t = tok[start:start + n]
            xe = x.index_select(0, t)
            y = (Fn.silu(xe @ self.gate[e].T) * (xe @ self.up[e].T)) @ self.down[e].T
            out = out.index_add(0, t, y * wf[start:start + n, None])
            start += n
        if self.shared is not None:
            g, u, d = self.shared
            s = (Fn.silu(x @ g.T) * (x @ u.T)) @ d.T
            if self.sgate is not None:
                s = torch.sigmoid(x @ self.sgate)[:, None] * s
            out = out + s
        aux = torch.zeros(())
        if self.r.get('lbCoef'):
            f = counts.to(x.dtype) / (T * K)
            q = scores if self.r['scoring'] == 'softmax' else scores / scores.sum(-1, keepdim=True)
            aux = aux + self.r['lbCoef'] * E * (f * q.mean(0)).sum()
        if self.r.get('zCoef'):
            aux = aux + self.r['zCoef'] * (torch.logsumexp(logits, -1) ** 2).mean()
        return out, aux


class Block(nn.Module):
    def __init__(self, c, std, rstd):
        super().__init__()
        D, eps = c['dim'], c.get('rmsEps', 1e-5)
        self.c = c
        self.n1, self.n2 = RMSNorm(D, eps), RMSNorm(D, eps)
        self.q, self.k, self.v, self.o = lin(D, D, std), lin(D, D, std), lin(D, D, std), lin(D, D, rstd)
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(D)) for _ in range(3)]) if c.get('qkvBias') else None
        self.qn, self.kn = (RMSNorm(D, eps), RMSNorm(D, eps)) if c.get('qkNorm') else (None, None)
        if c['nExpert'] == 0:
            F = c['ffnDim']
            self.ffn = nn.ParameterList([lin(F, D, std), lin(F, D, std), lin(D, F, rstd)])
            self.moe = None
        else:
            self.moe = MoE(c, std, rstd)

    def forward(self, x, B, S, cos, sin, mask):
        D, H = self.c['dim'], self.c['nHead']
        Dh = D // H
        h = self.n1(x)
        q, k, v = h @ self.q.T, h @ self.k.T, h @ self.v.T
        if self.bias is not None:
            q, k, v = q + self.bias[0], k + self.bias[1], v + self.bias[2]
        if self.qn is not None:
            q, k = self.qn(q), self.kn(k)

        def rope(t):
            t = t.view(B, S, H, Dh)
            a, b = t[..., :Dh // 2], t[..., Dh // 2:]
            return torch.cat([a * cos - b * sin, a * sin + b * cos], -1).transpose(1, 2)
        q, k = rope(q), rope(k)
        v = v.view(B, S, H, Dh).transpose(1, 2)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(Dh)).masked_fill(mask, float('-inf')).softmax(-1)
        x = x + (att @ v).transpose(1, 2).reshape(B * S, D) @ self.o.T
        h = self.n2(x)
        if self.moe is None:
            g, u, d = self.ffn
            return x + (Fn.silu(h @ g.T) * (h @ u.T)) @ d.T, torch.zeros(())
        y, aux = self.moe(h)
        return x + y, aux


class LM(nn.Module):
    def __init__(self, c):
        super().__init__()
        std = c.get('initStd', 0.02)
        rstd = std / math.sqrt(2 * c['nLayer'])
        self.c = c
        self.emb = nn.Parameter(torch.randn(c['vocab'], c['dim']) * std)
        self.blocks = nn.ModuleList([Block(c, std, rstd) for _ in range(c['nLayer'])])
        self.norm = RMSNorm(c['dim'], c.get('rmsEps', 1e-5))
        self.out = None if c.get('tied') else lin(c['vocab'], c['dim'], std)

    def forward(self, inputs, targets, B):
        c = self.c
        S = inputs.numel() // B
        Dh = c['dim'] // c['nHead']
        inv = c.get('ropeTheta', 10000) ** (-2.0 * torch.arange(Dh // 2) / Dh)
        ang = torch.arange(S)[:, None] * inv[None, :]
        cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
        mask = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)
        x = self.emb[inputs]
        aux = torch.zeros(())
        for b in self.blocks:
            x, a = b(x, B, S, cos, sin, mask)
            aux = aux + a
        x = self.norm(x)
        W = self.emb if self.out is None else self.out
        return Fn.cross_entropy(x @ W.T, targets) + aux


def main():
    a = json.loads(sys.argv[1])
    torch.manual_seed(0)
    torch.set_num_threads(a['threads'])
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    c = resolve(a['model'])
    B, S, o = a['B'], c['seqLen'], a.get('optim', {})
    model = LM(c)
    params = list(model.parameters())
    decay = [p for p in params if p.dim() >= 2]
    nodecay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': o.get('weightDecay', 0.1)}, {'params': nodecay, 'weight_decay': 0.0}],
                            lr=o.get('lr', 3e-3), betas=(o.get('beta1', 0.9), o.get('beta2', 0.95)), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    loss = float('nan')
    t0 = 0.0
    steps = 0
    it = 0
    while True:
        if it == a['warmup']:
            t0 = time.perf_counter()
        if it >= a['warmup']:
            if steps >= a.get('minSteps', 2) and time.perf_counter() - t0 >= a.get('seconds', 3):
                break
            steps += 1
        it += 1
        toks = torch.randint(0, c['vocab'], (B, S + 1), generator=g)
        inputs, targets = toks[:, :-1].reshape(-1), toks[:, 1:].reshape(-1)
        opt.zero_grad(set_to_none=True)
        l = model(inputs, targets, B)
        l.backward()
        torch.nn.utils.clip_grad_norm_(params, o.get('gradClip', 1.0))
        opt.step()
        loss = l.item()
    sec = time.perf_counter() - t0
    print(json.dumps({'tokS': steps * B * S / sec, 'seconds': sec, 'steps': steps, 'loss': loss, 'torch': torch.__version__, 'threads': torch.get_num_threads()}))


if __name__ == '__main__':
    main()
