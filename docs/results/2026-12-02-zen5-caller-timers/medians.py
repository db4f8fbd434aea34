import re,sys,statistics as st
sec=None; data={}
for line in open(sys.argv[1]):
    if line.startswith('==='): sec=line.strip('= \n'); continue
    m=re.match(r'round (\d+) (\S+)\s+answered.*server CPU\s+([\d.]+) us/request\s+([\d.]+) context',line)
    if not m: continue
    r,label,cpu,ctx=m.groups()
    key=re.sub(r', round \d+','',sec)
    data.setdefault(key,{}).setdefault((sec,r),{})[label]=(float(cpu),float(ctx))
for key,rounds in data.items():
    print(key)
    for lab,null in [('cohost-json','null-http'),('lanes-json','null-http'),('cohost-binary','null-http'),('lanes-binary','null-http'),('cohost-grpc','null-grpc'),('lanes-grpc','null-grpc')]:
        d=[v[lab][0]-v[null][0] for v in rounds.values() if lab in v]
        c=[v[lab][1] for v in rounds.values() if lab in v]
        if d: print(f"  {lab:14s} - {null}: median {st.median(d):+6.1f} us ({min(d):+.1f}..{max(d):+.1f}), n={len(d)}, ctx {st.median(c):.2f}")
