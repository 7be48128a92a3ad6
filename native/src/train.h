/* Training kernels (f32, row-major): the hot parts of src/train/layers.ts. Each has a plain
 * TypeScript reference there; test/train-native.test.ts compares them. Every output element is
 * computed by the same instruction sequence whatever the thread count, so training runs are
 * bit-for-bit reproducible on a given machine. */
#ifndef MOEKIT_TRAIN_H
#define MOEKIT_TRAIN_H
#include <stdint.h>

/* C[M,N] (+)= op(A)·op(B); op(A) is [M,K] (A stored [K,M] when transA), op(B) is [K,N]
 * (B stored [N,K] when transB). */
void mk_train_gemm(float *C, const float *A, const float *B, int M, int N, int K, int transA, int transB,
                   int accumulate, int nth);

/* Row softmax of logits[T,V] in place; loss[t] = logsumexp(row) − logit[target[t]]. */
void mk_train_xent(float *logits, const int32_t *targets, float *loss, int T, int V, int nth);

/* Causal attention over B sequences of S; q/k/v/out [B·S, H·Dh]; att [B,H,S,S] = probabilities. */
void mk_train_attn_fwd(float *out, float *att, const float *q, const float *k, const float *v, int B, int S, int H,
                       int Dh, int nth);
/* dq/dk/dv += the gradients (same layouts). */
void mk_train_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                       const float *v, const float *att, int B, int S, int H, int Dh, int nth);

/* One AdamW step over n parameters (src/train/optim.ts AdamW.step, bit for bit):
 * m ← b1·m + (1−b1)·g; v ← b2·v + (1−b2)·g²; p ← p·decay − step·m/(√v/bc2 + eps). */
void mk_train_adamw(float *p, const float *g, float *m, float *v, long n, double b1, double b2, double eps,
                    double step, double bc2, double decay, int nth);

#endif
