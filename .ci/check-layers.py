#!/usr/bin/env python3
"""List crate-internal imports between top-level modules of src/ (code only, not doc comments)."""
import collections, os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
mods = {n.removesuffix('.rs') for n in os.listdir(root) if n != 'lib.rs'}
edges = collections.defaultdict(lambda: collections.defaultdict(list))
for d, _, files in os.walk(root):
    for f in files:
        if not f.endswith('.rs'):
            continue
        p = os.path.join(d, f)
        top = os.path.relpath(p, root).split('/')[0].removesuffix('.rs')
        text = open(p).read()
        code = re.sub(r'//[^\n]*', '', text)  # drop comments and doc comments
        for m in re.finditer(r'crate::(\{[^}]*\}|\w+)', code, re.S):
            g = m.group(1)
            names = re.findall(r'(?:^|[{,])\s*(\w+)', g) if g.startswith('{') else [g]
            for t in names:
                if t in mods and t != top:
                    line = text[:m.start()].count('\n') + 1 if False else code[:m.start()].count('\n') + 1
                    edges[top][t].append(f'{p}:{line}')
for a in sorted(edges):
    print(a, '->', ', '.join(sorted(edges[a])))
bad = []
for a in edges:
    for b in edges[a]:
        if a < b and a in edges.get(b, {}):
            bad.append((a, b))
for a, b in bad:
    print(f'two-way: {a} <-> {b}')
    for s in edges[a][b][:5]: print('   ', a, '->', b, s)
    for s in edges[b][a][:5]: print('   ', b, '->', a, s)
sys.exit(1 if bad else 0)
