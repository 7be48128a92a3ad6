/* Per-op cost of the 512-bit integer ops the weight kernels use: 8 independent chains of each op in a loop.
 * bench/native/build.sh op-throughput && /tmp/op-throughput   (ns per op; a chain-bound op shows its latency / 8) */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define N 100000000
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int main(){
  __m512i a[8]; for(int i=0;i<8;i++) a[i]=_mm512_set1_epi32(i);
  __m512i b=_mm512_set1_epi32(3), c=_mm512_set1_epi32(5);
  double t=now();
  for(long i=0;i<N/8;i++){ for(int k=0;k<8;k++) a[k]=_mm512_dpbusd_epi32(a[k],b,c); __asm__ volatile("" : "+v"(a[0]),"+v"(a[1]),"+v"(a[2]),"+v"(a[3]),"+v"(a[4]),"+v"(a[5]),"+v"(a[6]),"+v"(a[7])); }
  double d=now()-t; printf("dpbusd zmm: %.3f ns each\n", d/N*1e9);
  t=now();
  for(long i=0;i<N/8;i++){ for(int k=0;k<8;k++) a[k]=_mm512_maddubs_epi16(a[k],b); __asm__ volatile("" : "+v"(a[0]),"+v"(a[1]),"+v"(a[2]),"+v"(a[3]),"+v"(a[4]),"+v"(a[5]),"+v"(a[6]),"+v"(a[7])); }
  d=now()-t; printf("maddubs zmm: %.3f ns each\n", d/N*1e9);
  t=now();
  for(long i=0;i<N/8;i++){ for(int k=0;k<8;k++) a[k]=_mm512_add_epi32(a[k],b); __asm__ volatile("" : "+v"(a[0]),"+v"(a[1]),"+v"(a[2]),"+v"(a[3]),"+v"(a[4]),"+v"(a[5]),"+v"(a[6]),"+v"(a[7])); }
  d=now()-t; printf("add zmm: %.3f ns each\n", d/N*1e9);
  t=now();
  for(long i=0;i<N/8;i++){ for(int k=0;k<8;k++) a[k]=_mm512_srli_epi16(a[k],3); __asm__ volatile("" : "+v"(a[0]),"+v"(a[1]),"+v"(a[2]),"+v"(a[3]),"+v"(a[4]),"+v"(a[5]),"+v"(a[6]),"+v"(a[7])); }
  d=now()-t; printf("srli zmm: %.3f ns each\n", d/N*1e9);
  t=now();
  for(long i=0;i<N/8;i++){ for(int k=0;k<8;k++) a[k]=_mm512_permutexvar_epi16(b,a[k]); __asm__ volatile("" : "+v"(a[0]),"+v"(a[1]),"+v"(a[2]),"+v"(a[3]),"+v"(a[4]),"+v"(a[5]),"+v"(a[6]),"+v"(a[7])); }
  d=now()-t; printf("vpermw zmm: %.3f ns each\n", d/N*1e9);
  t=now();
  for(long i=0;i<N/8;i++){ for(int k=0;k<8;k++) a[k]=_mm512_mullo_epi32(a[k],b); __asm__ volatile("" : "+v"(a[0]),"+v"(a[1]),"+v"(a[2]),"+v"(a[3]),"+v"(a[4]),"+v"(a[5]),"+v"(a[6]),"+v"(a[7])); }
  d=now()-t; printf("mullo zmm: %.3f ns each (latency-bound if > others)\n", d/N*1e9);
  return (int)_mm512_reduce_add_epi32(a[0]);
}
