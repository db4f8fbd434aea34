#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <immintrin.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(){
  size_t sz=2*1024*1024/4; // 2 MB of floats
  int maxk=32;
  float* buf=aligned_alloc(64,sz*4*maxk);
  for(size_t i=0;i<sz*maxk;i++)buf[i]=i*1e-9f;
  int ks[]={1,2,3,4,6,8,12,16,32};
  for(int ki=0;ki<9;ki++){int k=ks[ki];
    double best=1e18; float acc=0;
    for(int rep=0;rep<5;rep++){
      int iters=200;
      double t0=now();
      for(int it=0;it<iters;it++){
        float* b=buf+(size_t)(it%k)*sz;
        __m256 a0=_mm256_setzero_ps(),a1=a0,a2=a0,a3=a0;
        for(size_t i=0;i<sz;i+=32){a0=_mm256_add_ps(a0,_mm256_load_ps(b+i));a1=_mm256_add_ps(a1,_mm256_load_ps(b+i+8));a2=_mm256_add_ps(a2,_mm256_load_ps(b+i+16));a3=_mm256_add_ps(a3,_mm256_load_ps(b+i+24));}
        a0=_mm256_add_ps(_mm256_add_ps(a0,a1),_mm256_add_ps(a2,a3)); float t[8]; _mm256_storeu_ps(t,a0); acc+=t[0];
      }
      double dt=(now()-t0)/iters; if(dt<best)best=dt;
    }
    printf("k=%2d (%3d MB): %7.1f us per 2 MB pass (%.1f GB/s) %g\n",k,2*k,best/1e3,2.0*1024*1024/best,acc>1e30?acc:0);
  }
}
