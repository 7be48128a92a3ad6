#!/usr/bin/python3
"""PyTorch reference for moekit's trainer (issue 4).

Builds the same tiny MoE LMs as src/train/model.ts from the initial weights moekit exported, runs the
same 10 optimizer steps in float64 and prints per-step losses, aux losses and gradient norms as JSON.

    node --import tsx src/train/reference.ts .cache/train-ref
    /usr/bin/python3 scripts/torch_ref.py .cache/train-ref > test/fixtures/train/torch_ref.json

Written from the formulas (../shared/research/algorithms.md §2), independently of the TypeScript:
softmax/sigmoid routers with a selection-only bias (DeepSeek-V3), top-p (Dynamic_MoE), null experts
(AdaMoE), capacity with position dropping (Megatron), Switch/GShard LB loss, ST-MoE z-loss,
torch.optim.AdamW and torch.nn.utils.clip_grad_norm_.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as Fn

torch.set_default_dtype(torch.float64)


def load_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        assert info['dtype'] == 'F32'
        a, b = info['data_offsets']
        arr = np.frombuffer(data[a:b], dtype=np.float32).reshape(info['shape'])
        out[name] = torch.tensor(arr.astype(np.float64), requires_grad=True)
    return out


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope_neox(x, theta):
    # x [B, S, H, Dh]; rotate (x[i], x[i + Dh/2]) by pos * theta^(-2i/Dh)
    B, S, H, Dh = x.shape
    half = Dh // 2
    inv = theta ** (-2.0 * torch.arange(half) / Dh)
    ang = torch.arange(S)[:, None] * inv[None, :]
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def ffn(x, g, u, d):
    return (Fn.silu(x @ g.T) * (x @ u.T)) @ d.T


def moe(x, P, p, cfg, rc, bias):
    T, D = x.shape
    E = cfg['nExpert']
    N = rc.get('nullExperts', 0)
    R = E + N
    K = rc['K']
    logits = x @ P[p + 'ffn_gate_inp.weight'].T
    scores = torch.softmax(logits, -1) if rc['scoring'] == 'softmax' else torch.sigmoid(logits)
    sel = scores.detach() + bias[None, :]
    order = torch.argsort(sel, dim=-1, descending=True, stable=True)[:, :K]
    valid = torch.ones(T, K, dtype=torch.bool)
    if rc.get('topP') is not None:
        cum = torch.cumsum(scores.detach().gather(1, order), dim=-1)
        prev = torch.cat([torch.zeros(T, 1), cum[:, :-1]], dim=1)
        valid = (prev < rc['topP'])
        valid[:, 0] = True
    w = scores.gather(1, order) * valid
    if rc['normalize']:
        w = w / w.sum(-1, keepdim=True)
    w = w * rc.get('scale', 1)
    counts = torch.zeros(R)
    counts1 = torch.zeros(R)
    for t in range(T):
        for j in range(K):
            if valid[t, j]:
                counts[order[t, j]] += 1
        counts1[order[t, 0]] += 1
    # capacity: position policy in token-major, slot order
    cf = rc.get('capacityFactor', 0) or 0
    cap = math.ceil(T * K / E * cf) if cf > 0 else float('inf')
    keep = torch.zeros(T, K, dtype=torch.bool)
    used = [0] * R
    for t in range(T):
        for j in range(K):
            e = int(order[t, j])
            if valid[t, j] and e < E and used[e] < cap:
                used[e] += 1
                keep[t, j] = True
    out = torch.zeros(T, D)
    for e in range(E):
        pos = ((order == e) & keep).nonzero()
        if len(pos) == 0:
            continue
        toks = pos[:, 0]
        y = ffn(x[toks], P[p + 'ffn_gate_exps.weight'][e], P[p + 'ffn_up_exps.weight'][e], P[p + 'ffn_down_exps.weight'][e])
        out = out.index_add(0, toks, w[pos[:, 0], pos[:, 1]][:, None] * y)
    if p + 'ffn_gate_shexp.weight' in P:
        s = ffn(x, P[p + 'ffn_gate_shexp.weight'], P[p + 'ffn_up_shexp.weight'], P[p + 'ffn_down_shexp.weight'])
        if p + 'ffn_gate_inp_shexp.weight' in P:
            s = torch.sigmoid(x @ P[p + 'ffn_gate_inp_shexp.weight'])[:, None] * s
        out = out + s
    # losses
    lb = torch.zeros(())
    if rc.get('lbCoef', 0):
        norm = rc.get('lbNorm', 'megatron')
        f = counts1 / T if norm == 'gshard' else counts / T if norm == 'hf' else counts / (T * K)
        q = scores if rc['scoring'] == 'softmax' else scores / scores.sum(-1, keepdim=True)
        Pm = q.mean(0)
        if N > 0:  # AdaMoE: nulls form one averaged bucket
            terms = (f[:E] * Pm[:E]).sum() + f[E:].mean() * Pm[E:].mean()
            lb = rc['lbCoef'] * (E + 1) * terms
        else:
            lb = rc['lbCoef'] * E * (f * Pm).sum()
    z = torch.zeros(())
    if rc.get('zCoef', 0):
        z = rc['zCoef'] * (torch.logsumexp(logits, -1) ** 2).mean()
    return out, lb, z, counts


def forward(P, cfg, inputs, targets, B, biases):
    D, H, L = cfg['dim'], cfg['nHead'], cfg['nLayer']
    Dh = D // H
    eps = cfg.get('rmsEps', 1e-5)
    theta = cfg.get('ropeTheta', 10000)
    S = len(inputs) // B
    x = P['token_embd.weight'][torch.tensor(inputs)]
    lbs, zs, counts = [], [], []
    for l in range(L):
        p = f'blk.{l}.'
        h = rmsnorm(x, P[p + 'attn_norm.weight'], eps)
        proj = lambda n: h @ P[p + f'attn_{n}.weight'].T + (P[p + f'attn_{n}.bias'] if p + f'attn_{n}.bias' in P else 0)
        q, k, v = proj('q'), proj('k'), proj('v')
        if p + 'attn_q_norm.weight' in P:
            q = rmsnorm(q, P[p + 'attn_q_norm.weight'], eps)
            k = rmsnorm(k, P[p + 'attn_k_norm.weight'], eps)
        q = rope_neox(q.view(B, S, H, Dh), theta).transpose(1, 2)
        k = rope_neox(k.view(B, S, H, Dh), theta).transpose(1, 2)
        v = v.view(B, S, H, Dh).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
        att = att.masked_fill(torch.triu(torch.ones(S, S, dtype=torch.bool), 1), float('-inf')).softmax(-1)
        a = (att @ v).transpose(1, 2).reshape(B * S, D)
        x = x + a @ P[p + 'attn_output.weight'].T
        h = rmsnorm(x, P[p + 'ffn_norm.weight'], eps)
        if cfg['nExpert'] == 0:
            y = ffn(h, P[p + 'ffn_gate.weight'], P[p + 'ffn_up.weight'], P[p + 'ffn_down.weight'])
        else:
            y, lb, z, c = moe(h, P, p, cfg, cfg['router'], biases[l])
            lbs.append(lb); zs.append(z); counts.append(c)
        x = x + y
    x = rmsnorm(x, P['output_norm.weight'], eps)
    W = P['output.weight'] if 'output.weight' in P else P['token_embd.weight']
    lm = Fn.cross_entropy(x @ W.T, torch.tensor(targets))
    lb = sum(lbs) if lbs else torch.zeros(())
    z = sum(zs) if zs else torch.zeros(())
    return lm + lb + z, lm, lb, z, counts


def lr_at(it, o):
    min_lr = o.get('minLr', o['lr'] / 10)
    if it < o['warmup']:
        return o['lr'] * (it + 1) / o['warmup']
    if it >= o['steps']:
        return min_lr
    ratio = (it - o['warmup']) / max(1, o['steps'] - o['warmup'])
    return min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (o['lr'] - min_lr)


def run_case(d):
    case = json.load(open(os.path.join(d, 'case.json')))
    cfg, o = case['model'], case['optim']
    P = load_safetensors(os.path.join(d, 'init.safetensors'))
    R = cfg['nExpert'] + cfg['router'].get('nullExperts', 0)
    biases = [torch.zeros(R) for _ in range(cfg['nLayer'])]
    decay = [t for t in P.values() if t.dim() >= 2]
    no_decay = [t for t in P.values() if t.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': o['weightDecay']}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=o['lr'], betas=(o['beta1'], o['beta2']), eps=o['eps'])
    rows = []
    for it, b in enumerate(case['batches']):
        lr = lr_at(it, o)
        for g in opt.param_groups:
            g['lr'] = lr
        opt.zero_grad()
        loss, lm, lb, z, counts = forward(P, cfg, b['inputs'], b['targets'], case['B'], biases)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(list(P.values()), o['gradClip'])
        opt.step()
        gamma = cfg['router'].get('biasRate', 0) or 0
        if gamma > 0:
            E = cfg['nExpert']
            for l, c in enumerate(counts):
                biases[l][:E] += gamma * torch.sign(c[:E].mean() - c[:E])
        rows.append({'loss': loss.item(), 'lm': lm.item(), 'lb': float(lb), 'z': float(z), 'gradNorm': gn.item(), 'lr': lr})
    return rows


def main():
    root = sys.argv[1]
    cases = {}
    for name in sorted(os.listdir(root)):
        if os.path.exists(os.path.join(root, name, 'case.json')):
            cases[name] = run_case(os.path.join(root, name))
    out = {
        'command': 'node --import tsx src/train/reference.ts .cache/train-ref && /usr/bin/python3 scripts/torch_ref.py .cache/train-ref > test/fixtures/train/torch_ref.json',
        'torch': torch.__version__,
        'dtype': 'float64',
        'cases': cases,
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
