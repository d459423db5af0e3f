#!/usr/bin/env python3
"""Every C++ sample in README.md and docs/*.md is compiled and run (ctest label `docs`).

    samples.py generate <markdown file> <source root> <output .cpp>
        writes one translation unit holding every ```cpp block of the markdown file; the
        build compiles it (target revox_docs_<name>) and ctest docs.<file> runs it.
    samples.py layout <docs/architecture.md> <include dir>
        checks that the layout of architecture.md names every header under include/revox.

How a ```cpp (or ```c++) block becomes code:
  * A block with `int main(` is a complete program, compiled as it is.
  * Any other block is a fragment: its #include lines, and its declarations at brace depth 0
    (templates, classes, structs, enums, namespaces, `using`, function definitions), go to
    namespace scope; its statements run in order inside a function.
  * A block whose first line is a comment containing "continues the sample above" extends
    the previous block of the same file: it is the same program, so it may use that block's
    names (write it so a reader sees where the names come from).
  * A block whose first line is `// sample: compile only` is compiled but not run (for
    code that needs data files or a GPU).
Each sample (a block and its continuations) lives in its own namespace, so samples may
reuse names. `#line` directives make compiler errors name the markdown file and line; at
run time the program prints the sample it is running, so a failure names it too.
"""
import os
import re
import sys

FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([^\s`]*)")
MAIN = re.compile(r"\bint\s+main\s*\(")
CONTINUES = re.compile(r"^\s*//.*continues the sample above", re.IGNORECASE)
COMPILE_ONLY = re.compile(r"^\s*//\s*sample:\s*compile only", re.IGNORECASE)
DECL_START = re.compile(r"^(template\b|struct\b|class\b|union\b|enum\b|namespace\b|using\b|"
                        r"typedef\b|inline\b|constexpr\b|static\b)")
# `Type name(args) {` or `Type name(args) const {` at depth 0: a function definition.
FUNC_DEF = re.compile(r"^(?!return\b|if\b|for\b|while\b|switch\b|else\b|do\b|case\b)"
                      r"[A-Za-z_][\w:<>,\s\*&]*[\s\*&]([A-Za-z_][\w:]*)\s*\([^=;]*\)\s*"
                      r"(const\s*)?(noexcept\s*)?(->\s*[\w:<>]+\s*)?\{?\s*$")


def cpp_blocks(path):
    """Yields (first code line number, [code lines]) for each ```cpp block."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(2), m.group(3).lower()
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].lstrip().startswith(fence):
            j += 1
        if lang in ("cpp", "c++", "cxx"):
            indent = len(m.group(1))
            code = [l[indent:] if l[:indent].strip() == "" else l for l in lines[start:j]]
            yield start + 1, code
        i = j + 1


def strip_noise(line):
    """The line without string and character literals and // comments (for brace counting)."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])*'", "''", line)
    return line.split("//", 1)[0]


def split_fragment(first_line, code):
    """Splits a fragment into (includes, declarations, statements), each a list of
    (markdown line number, text)."""
    includes, decls, stmts = [], [], []
    depth = 0
    in_decl = False
    for k, text in enumerate(code):
        number = first_line + k
        bare = strip_noise(text).strip()
        if depth == 0 and not in_decl:
            if text.lstrip().startswith("#"):
                includes.append((number, text))
                continue
            if DECL_START.match(bare) or FUNC_DEF.match(bare):
                in_decl = True
        (decls if in_decl else stmts).append((number, text))
        depth += bare.count("{") - bare.count("}")
        if in_decl and depth == 0 and (bare.endswith(";") or bare.endswith("}")):
            in_decl = False
    return includes, decls, stmts


def emit(out, lines, source):
    for number, text in lines:
        out.append('#line %d "%s"' % (number, source))
        out.append(text)


def generate(markdown, root, output):
    source = os.path.relpath(markdown, root)
    samples = []  # each: dict(line, program, compile_only, parts=[(line, includes, decls, stmts)])
    for line, code in cpp_blocks(markdown):
        first = next((t for t in code if t.strip()), "")
        if CONTINUES.match(first):
            if not samples or samples[-1]["program"]:
                sys.exit('%s:%d: "continues the sample above", but there is no fragment '
                         'above to continue' % (source, line))
            samples[-1]["parts"].append((line,) + split_fragment(line, code))
            continue
        sample = {"line": line, "compile_only": bool(COMPILE_ONLY.match(first)),
                  "program": any(MAIN.search(strip_noise(t)) for t in code)}
        if sample["program"]:
            sample["parts"] = [(line, [(line + k, t) for k, t in enumerate(code)
                                       if t.lstrip().startswith("#include")],
                                [(line + k, t if not t.lstrip().startswith("#include") else "")
                                 for k, t in enumerate(code)], [])]
        else:
            sample["parts"] = [(line,) + split_fragment(line, code)]
        samples.append(sample)

    out = ["// Generated by tests/docs/samples.py from %s: do not edit." % source,
           "#include <cstdio>", "#include <exception>", ""]
    for sample in samples:  # every #include at global scope, before any namespace
        for part in sample["parts"]:
            emit(out, part[1], source)
    out.append('#line %d "%s"' % (len(out) + 2, os.path.basename(output)))
    out.append("namespace revox_docs {")
    out.append("inline const char*& current() { static const char* where = \"\"; return where; }")
    out.append("inline void at(const char* where) { current() = where; std::printf(\"running the "
               "sample at %s\\n\", where); std::fflush(stdout); }")
    out.append("inline int call(int (*f)()) { return f(); }")
    out.append("inline int call(int (*f)(int, char**)) { static char name[] = \"sample\"; "
               "static char* argv[] = {name, nullptr}; return f(1, argv); }")
    out.append("}  // namespace revox_docs")
    runs = []
    sample_is_program = {}
    for sample in samples:
        where = "%s:%d" % (source, sample["line"])
        ns = "revox_docs_sample_%d" % sample["line"]
        sample_is_program[ns] = sample["program"]
        out.append("namespace %s {" % ns)
        if sample["program"]:
            out.append("#define main sample_main")
            emit(out, sample["parts"][0][2], source)
            out.append("#undef main")
            out.append("int run() { return revox_docs::call(&sample_main); }")
        else:
            for part in sample["parts"]:
                emit(out, part[2], source)
            out.append("int run() {")
            for part in sample["parts"]:
                out.append('revox_docs::at("%s:%d");' % (source, part[0]))
                emit(out, part[3], source)
            out.append("return 0;")
            out.append("}")
        out.append("}  // namespace %s" % ns)
        runs.append((where, ns, sample["compile_only"]))
    out.append('#line %d "%s"' % (len(out) + 2, os.path.basename(output)))
    out.append("int main() {")
    out.append("  try {")
    for where, ns, compile_only in runs:
        if compile_only:
            out.append('    std::printf("compiled, not run: the sample at %s\\n");' % where)
            continue
        if sample_is_program[ns]:
            out.append('    revox_docs::at("%s");' % where)
        out.append("    if (int rc = %s::run(); rc != 0) {" % ns)
        out.append('      std::printf("FAIL: the sample at %s returned %d\\n", '
                   'revox_docs::current(), rc);')
        out.append("      return 1;")
        out.append("    }")
    out.append("  } catch (const std::exception& e) {")
    out.append('    std::printf("FAIL: the sample at %s threw: %s\\n", revox_docs::current(), '
               'e.what());')
    out.append("    return 1;")
    out.append("  }")
    out.append('  std::printf("%d C++ sample(s) of %s compiled, %d run\\n");'
               % (len(runs), source, sum(1 for r in runs if not r[2])))
    out.append("  return 0;")
    out.append("}")
    text = "\n".join(out) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    if not os.path.exists(output) or open(output, encoding="utf-8").read() != text:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)


def layout(architecture, include_dir):
    """Every header under include/revox is named in architecture.md's layout block: by its
    path (`models/unet.hpp`), by a pattern for its folder (`ops/cpu/<op>.hpp`), or by its
    path below a folder entry (`core/` ... `tensor.hpp`)."""
    with open(architecture, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^```\n(include/revox/\n.*?)^```", text, re.S | re.M)
    if not m:
        sys.exit("%s: no layout block starting with include/revox/" % architecture)
    entries = []  # (token, text of the entry)
    for line in m.group(1).split("\n")[1:]:
        if not line.startswith("  ") or line.startswith("   "):
            if entries and line.startswith("   "):
                entries[-1][1] += " " + line.strip()
            continue
        token, _, rest = line.strip().partition(" ")
        entries.append([token, rest])
    root = os.path.join(include_dir, "revox")
    missing = []
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith((".hpp", ".cuh")):
                continue
            header = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            ok = False
            for token, rest in entries:
                if token == header:
                    ok = True
                elif "<" in token:
                    pattern = re.escape(token.split("<")[0]) + r"[\w]+" + \
                        re.escape(token.split(">")[-1])
                    ok = re.fullmatch(pattern, header) is not None
                elif token.endswith("/") and header.startswith(token):
                    below = header[len(token):]
                    ok = re.search(r"(^|[\s(,])" + re.escape(below) + r"\b", rest) is not None
                if ok:
                    break
            if not ok:
                missing.append(header)
    if missing:
        for header in sorted(missing):
            print("FAIL: %s's layout does not name include/revox/%s" % (architecture, header))
        sys.exit(1)
    print("every header under include/revox is named in %s" % architecture)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "generate":
        generate(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 4 and sys.argv[1] == "layout":
        layout(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
