// Reading PTX as the driver's JIT does before it compiles: the ISA version and target, every
// .entry with its parameter list, the static shared memory each entry uses (its own .shared
// declarations, module-scope ones it names, and those of the .func it calls) and whether it
// synchronises a block (bar.sync / barrier.sync, directly or through a call). The simulator
// does not execute PTX: it runs the host build of the kernel of the same name.
#include <cctype>
#include <cstring>
#include <set>

#include "sim.h"

namespace sim {

namespace {

uint32_t type_size(const std::string& t) {
    static const std::map<std::string, uint32_t> sizes = {
        {".b8", 1},   {".u8", 1},  {".s8", 1},  {".b16", 2}, {".u16", 2},   {".s16", 2},  {".f16", 2},
        {".bf16", 2}, {".b32", 4}, {".u32", 4}, {".s32", 4}, {".f32", 4},   {".f16x2", 4}, {".b64", 8},
        {".u64", 8},  {".s64", 8}, {".f64", 8}, {".b128", 16}, {".pred", 1},
    };
    auto it = sizes.find(t);
    return it == sizes.end() ? 0 : it->second;
}

// Text with comments blanked out (newlines kept, so line numbers stay right).
std::string strip_comments(const char* text) {
    std::string s(text);
    for (size_t i = 0; i + 1 < s.size(); ++i) {
        if (s[i] == '/' && s[i + 1] == '/') {
            while (i < s.size() && s[i] != '\n') s[i++] = ' ';
        } else if (s[i] == '/' && s[i + 1] == '*') {
            while (i + 1 < s.size() && !(s[i] == '*' && s[i + 1] == '/')) {
                if (s[i] != '\n') s[i] = ' ';
                ++i;
            }
            if (i + 1 < s.size()) s[i] = s[i + 1] = ' ';
        } else if (s[i] == '"') {  // strings (in .file directives) may hold anything
            ++i;
            while (i < s.size() && s[i] != '"') ++i;
        }
    }
    return s;
}

bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' || c == '.'; }

struct Scanner {
    const std::string& s;
    size_t i = 0;
    explicit Scanner(const std::string& text) : s(text) {}
    void skip_ws() {
        while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    }
    bool eof() {
        skip_ws();
        return i >= s.size();
    }
    char peek() {
        skip_ws();
        return i < s.size() ? s[i] : '\0';
    }
    std::string word() {  // an identifier or directive (.foo), or one punctuation character
        skip_ws();
        if (i >= s.size()) return "";
        size_t b = i;
        if (ident_char(s[i])) {
            while (i < s.size() && ident_char(s[i])) ++i;
        } else {
            ++i;
        }
        return s.substr(b, i - b);
    }
    uint32_t line_at(size_t pos) const {
        uint32_t l = 1;
        for (size_t k = 0; k < pos && k < s.size(); ++k) l += s[k] == '\n';
        return l;
    }
    // Skips a balanced (...) or {...} starting at the current opening character.
    size_t skip_group(char open, char close) {
        int depth = 0;
        size_t b = i;
        for (; i < s.size(); ++i) {
            if (s[i] == open) ++depth;
            if (s[i] == close && --depth == 0) {
                ++i;
                break;
            }
        }
        return b;
    }
};

struct SharedDecl {
    std::string name;
    uint32_t bytes;
};

// `.shared [.align N] .type name[N]...;` at position i of s (after ".shared"): the declaration.
bool parse_shared_decl(const std::string& s, size_t i, SharedDecl* out) {
    Scanner sc(s);
    sc.i = i;
    std::string w = sc.word();
    if (w == ".align") {
        sc.word();
        w = sc.word();
    }
    uint32_t elem = type_size(w);
    if (elem == 0) return false;
    std::string name = sc.word();
    if (name.empty() || !ident_char(name[0])) return false;
    uint64_t count = 1;
    while (sc.peek() == '[') {
        sc.word();
        std::string n = sc.word();
        if (n == "]") {
            count = 0;  // extern dynamic shared memory: sized at launch
            continue;
        }
        count *= std::strtoull(n.c_str(), nullptr, 10);
        sc.word();  // ]
    }
    out->name = name;
    out->bytes = static_cast<uint32_t>(count * elem);
    return true;
}

struct Body {
    std::vector<SharedDecl> shared;
    std::set<std::string> words;  // every identifier in the body (module-scope names, callees)
    std::set<std::string> callees;
    bool barrier = false;
};

Body scan_body(const std::string& s, size_t b, size_t e) {
    Body body;
    for (size_t i = b; i < e;) {
        if (!ident_char(s[i])) {
            ++i;
            continue;
        }
        size_t w0 = i;
        while (i < e && ident_char(s[i])) ++i;
        std::string w = s.substr(w0, i - w0);
        if (w == ".shared" && (w0 == 0 || std::isspace(static_cast<unsigned char>(s[w0 - 1])))) {
            SharedDecl d;
            if (parse_shared_decl(s, i, &d)) body.shared.push_back(d);
        } else if (w.rfind("bar.", 0) == 0 || w.rfind("barrier.", 0) == 0) {
            // bar.sync, bar.red, bar.arrive, barrier.sync, barrier.cta.*; not bar.warp.sync
            if (w.find(".warp") == std::string::npos) body.barrier = true;
        } else if (w.rfind("call", 0) == 0 && (w == "call" || w[4] == '.')) {
            // call[.uni] (ret), target, (args);  or  call[.uni] target, (args);
            Scanner sc(s);
            sc.i = i;
            if (sc.peek() == '(') sc.skip_group('(', ')'), sc.word();  // return value, then ','
            std::string t = sc.word();
            if (!t.empty() && ident_char(t[0])) body.callees.insert(t);
        } else {
            body.words.insert(w);
        }
    }
    return body;
}

}  // namespace

bool parse_ptx(const char* text, PtxModule* out, std::string* error) {
    std::string s = strip_comments(text);
    Scanner sc(s);
    std::map<std::string, uint32_t> module_shared;
    struct Fn {
        Body body;
        bool entry;
        size_t index;  // in out->entries for entries
    };
    std::map<std::string, Fn> fns;
    bool have_version = false;
    while (!sc.eof()) {
        size_t at = sc.i;
        std::string w = sc.word();
        if (w == ".version") {
            std::string v = sc.word();
            if (std::sscanf(v.c_str(), "%d.%d", &out->version_major, &out->version_minor) != 2) {
                *error = strprintf("ptxas application ptx input, line %u; fatal : Parsing error near '%s'",
                                   sc.line_at(at), v.c_str());
                return false;
            }
            have_version = true;
        } else if (w == ".target") {
            std::string t = sc.word();
            while (sc.peek() == ',') sc.word(), sc.word();
            if (t.rfind("sm_", 0) == 0) out->target_sm = std::atoi(t.c_str() + 3);
        } else if (w == ".shared") {
            SharedDecl d;
            if (parse_shared_decl(s, sc.i, &d)) module_shared[d.name] = d.bytes;
            while (sc.i < s.size() && s[sc.i] != ';') ++sc.i;
        } else if (w == ".entry" || w == ".func") {
            bool entry = w == ".entry";
            if (!entry && sc.peek() == '(') sc.skip_group('(', ')');  // return parameters
            std::string name = sc.word();
            PtxEntry e;
            e.name = name;
            e.line = sc.line_at(at);
            if (sc.peek() == '(') {
                size_t p0 = sc.i;
                sc.skip_group('(', ')');
                std::string plist = s.substr(p0 + 1, sc.i - p0 - 2);
                // split on commas at depth 0 ('[' never holds commas here)
                size_t k = 0;
                while (k < plist.size()) {
                    size_t comma = plist.find(',', k);
                    if (comma == std::string::npos) comma = plist.size();
                    std::string decl = plist.substr(k, comma - k);
                    k = comma + 1;
                    Scanner ps(decl);
                    if (ps.word() != ".param") continue;
                    PtxParam prm;
                    uint32_t elem = 0;
                    uint64_t count = 1;
                    while (!ps.eof()) {
                        std::string t = ps.word();
                        if (t == ".align") {
                            prm.align = static_cast<uint32_t>(std::strtoul(ps.word().c_str(), nullptr, 10));
                        } else if (type_size(t)) {
                            elem = type_size(t);
                        } else if (t == "[") {
                            count *= std::strtoull(ps.word().c_str(), nullptr, 10);
                            ps.word();
                        } else if (!t.empty() && t[0] != '.' && ident_char(t[0])) {
                            prm.name = t;
                        }
                    }
                    prm.size = static_cast<uint32_t>(elem * count);
                    if (prm.align == 0) prm.align = elem;
                    e.params.push_back(prm);
                }
            }
            // performance directives, then a body or a ';' (a declaration)
            while (sc.i < s.size() && s[sc.i] != '{' && s[sc.i] != ';') ++sc.i;
            if (sc.i < s.size() && s[sc.i] == '{') {
                size_t b = sc.i;
                sc.skip_group('{', '}');
                Fn f{scan_body(s, b, sc.i), entry, 0};
                if (entry) {
                    f.index = out->entries.size();
                    out->entries.push_back(e);
                }
                fns[name] = std::move(f);
            } else {
                ++sc.i;
            }
        } else if (w == "{") {
            --sc.i;
            sc.skip_group('{', '}');
        }
    }
    if (!have_version) {
        *error = "ptxas application ptx input, line 1; fatal : Missing .version directive at start of file";
        return false;
    }
    // Shared memory and barriers of each entry, through the .func it calls (transitively).
    for (auto& [name, f] : fns) {
        if (!f.entry) continue;
        PtxEntry& e = out->entries[f.index];
        std::set<std::string> seen{name};
        std::vector<const Fn*> todo{&f};
        std::set<std::string> shared_names;
        uint32_t bytes = 0;
        while (!todo.empty()) {
            const Fn* g = todo.back();
            todo.pop_back();
            for (auto& d : g->body.shared) bytes += d.bytes;
            e.barrier |= g->body.barrier;
            for (auto& [sname, sbytes] : module_shared)
                if (g->body.words.count(sname) && shared_names.insert(sname).second) bytes += sbytes;
            for (auto& c : g->body.callees) {
                auto it = fns.find(c);
                if (it != fns.end() && seen.insert(c).second) todo.push_back(&it->second);
            }
        }
        e.static_shared = bytes;
    }
    return true;
}

}  // namespace sim
