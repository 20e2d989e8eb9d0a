//! `trellis init`: scaffolds a plugin project, as `kubebuilder init` +
//! `create api` do for a Go operator: the plugin's source with a typed spec
//! and status, the CRD of its kind, a sample, scenarios for `trellis test`,
//! a Makefile (`build`, `test`, `render`, `install`, `deploy`, `run`) and a
//! README. The project builds and its test passes with no edit.
//!
//! The templates live in `templates/` beside this file, compiled into the
//! binary; [`plan`] fills them in (pure), [`write`] puts them on disk.

use std::path::{Path, PathBuf};

/// The language of the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Typescript,
}

/// Why a project was not scaffolded. Nothing is written then.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("--kind {0:?} is not a kind: an upper-case letter, then letters and digits (e.g. Website)")]
    Kind(String),
    #[error("--group {0:?} is not an API group: a DNS subdomain with a dot (e.g. example.com)")]
    Group(String),
    #[error("--version {0:?} is not an API version such as v1, v1alpha1 or v2beta3")]
    Version(String),
    #[error("{0} exists and is not empty: scaffold into a new or empty folder")]
    NotEmpty(PathBuf),
    #[error("the Trellis SDKs are not at {0} (give --sdk-root, the folder of a Trellis checkout)")]
    NoSdk(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What to scaffold.
#[derive(Debug, Clone)]
pub struct Project {
    pub language: Language,
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The Trellis checkout whose SDKs the project depends on.
    pub sdk_root: PathBuf,
}

/// One file of the project: its path inside the project and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaffoldFile {
    pub path: &'static str,
    pub text: String,
}

macro_rules! template {
    ($path:literal, $file:literal) => {
        ($path, include_str!(concat!("templates/", $file)))
    };
}

/// The Makefile targets every language shares; each language's
/// `Makefile.head` (its variables, `build` and `clean`) comes first.
const MAKEFILE_TARGETS: &str = include_str!("templates/common/Makefile.targets");

/// Files every project has.
const COMMON: &[(&str, &str)] = &[
    template!("sample.yaml", "common/sample.yaml"),
    template!("tests/new.yaml", "common/tests/new.yaml"),
    template!("tests/missing-message.yaml", "common/tests/missing-message.yaml"),
    template!("README.md", "common/README.md"),
];

const PYTHON: &[(&str, &str)] = &[
    template!("plugin.py", "python/plugin.py"),
    template!("crd.yaml", "common/crd.yaml"),
    template!("Makefile", "python/Makefile.head"),
    (".gitignore", "build/\n.venv/\n__pycache__/\n"),
];

const TYPESCRIPT: &[(&str, &str)] = &[
    template!("plugin.ts", "typescript/plugin.ts"),
    template!("crd.yaml", "common/crd.yaml"),
    template!("package.json", "typescript/package.json"),
    template!("Makefile", "typescript/Makefile.head"),
    template!(".npmrc", "typescript/npmrc"),
    (".gitignore", "build/\nnode_modules/\n"),
];

const RUST: &[(&str, &str)] = &[
    template!("src/lib.rs", "rust/src/lib.rs"),
    template!("crd.yaml", "rust/crd.yaml"),
    template!("Cargo.toml", "rust/Cargo.toml"),
    template!("Makefile", "rust/Makefile.head"),
    (".gitignore", "build/\ntarget/\n"),
];

/// The plugin's name: the kind in kebab case (`WebSite` → `web-site`).
pub fn plugin_name(kind: &str) -> String {
    let mut name = String::new();
    for (i, c) in kind.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// Checks the names and fills in every template.
pub fn plan(project: &Project) -> Result<Vec<ScaffoldFile>, ScaffoldError> {
    let kind = &project.kind;
    if !kind.starts_with(|c: char| c.is_ascii_uppercase()) || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ScaffoldError::Kind(kind.clone()));
    }
    if !project.group.contains('.') || !crate::runtime::is_dns_subdomain(&project.group) {
        return Err(ScaffoldError::Group(project.group.clone()));
    }
    if !is_api_version(&project.version) {
        return Err(ScaffoldError::Version(project.version.clone()));
    }
    let name = plugin_name(kind);
    let root = project.sdk_root.display().to_string();
    let (language, source, crd_note, files) = match project.language {
        Language::Python => (
            "Python",
            "`plugin.py`",
            ", generated from the dataclasses of `plugin.py` by `make crd`",
            PYTHON,
        ),
        Language::Typescript => (
            "TypeScript",
            "`plugin.ts`",
            ", the schema of `plugin.ts`'s spec: keep the two in step",
            TYPESCRIPT,
        ),
        Language::Rust => (
            "Rust",
            "`src/lib.rs`",
            ", generated from the types of `src/lib.rs` by `make crd`",
            RUST,
        ),
    };
    let fill = |text: &str| {
        text.replace("__KIND_LOWER__", &kind.to_lowercase())
            .replace("__PLURAL__", &format!("{}s", kind.to_lowercase()))
            .replace("__KIND__", kind)
            .replace("__GROUP__", &project.group)
            .replace("__VERSION__", &project.version)
            .replace("__NAME__", &name)
            .replace("__CRATE__", &name.replace('-', "_"))
            .replace("__TRELLIS_SDK_JS__", &format!("file:{root}/sdk-js"))
            .replace("__TRELLIS__", &root)
            .replace("__LANGUAGE__", language)
            .replace("__SOURCE__", source)
            .replace("__CRD_NOTE__", crd_note)
    };
    Ok(COMMON
        .iter()
        .chain(files)
        .map(|&(path, text)| {
            let text = match path {
                "Makefile" => fill(&format!("{text}{MAKEFILE_TARGETS}")),
                _ => fill(text),
            };
            ScaffoldFile { path, text }
        })
        .collect())
}

/// `v1`, `v1alpha1`, `v2beta3`.
fn is_api_version(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let (major, stage) = rest.split_at(digits);
    if major.is_empty() || major.starts_with('0') {
        return false;
    }
    match stage.strip_prefix("alpha").or_else(|| stage.strip_prefix("beta")) {
        None => stage.is_empty(),
        Some(n) => !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && !n.starts_with('0'),
    }
}

/// Writes `files` into `dir`, which must be new or empty.
pub fn write(dir: &Path, files: &[ScaffoldFile]) -> Result<(), ScaffoldError> {
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(dir.to_owned()));
    }
    for file in files {
        let path = dir.join(file.path);
        let failed = |source| ScaffoldError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        std::fs::write(&path, &file.text).map_err(failed)?;
    }
    Ok(())
}

/// Checks that `root` holds the SDKs a project of `language` depends on.
pub fn check_sdk_root(root: &Path, language: Language) -> Result<(), ScaffoldError> {
    let marker = match language {
        Language::Python => "sdk-python/pyproject.toml",
        Language::Typescript => "sdk-js/package.json",
        Language::Rust => "sdk/Cargo.toml",
    };
    if root.join(marker).is_file() {
        Ok(())
    } else {
        Err(ScaffoldError::NoSdk(root.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(language: Language) -> Project {
        Project {
            language,
            group: "example.com".into(),
            version: "v1alpha1".into(),
            kind: "WebSite".into(),
            sdk_root: "/opt/trellis".into(),
        }
    }

    #[test]
    fn every_placeholder_is_filled_in() {
        for language in [Language::Rust, Language::Python, Language::Typescript] {
            for file in plan(&project(language)).unwrap() {
                let left = file
                    .text
                    .match_indices("__")
                    .any(|(at, _)| file.text[at + 2..].starts_with(|c: char| c.is_ascii_uppercase()));
                assert!(!left, "{language:?} {}: {}", file.path, file.text);
            }
        }
        let files = plan(&project(Language::Typescript)).unwrap();
        let crd = files.iter().find(|f| f.path == "crd.yaml").unwrap();
        assert!(crd.text.contains("name: \"websites.example.com\""), "{}", crd.text);
        let package = files.iter().find(|f| f.path == "package.json").unwrap();
        assert!(
            package.text.contains("\"file:/opt/trellis/sdk-js\""),
            "{}",
            package.text
        );
    }

    #[test]
    fn names_are_checked() {
        let refused = |edit: fn(&mut Project)| {
            let mut p = project(Language::Rust);
            edit(&mut p);
            plan(&p).unwrap_err().to_string()
        };
        assert!(refused(|p| p.kind = "website".into()).contains("is not a kind"));
        assert!(refused(|p| p.group = "Example".into()).contains("is not an API group"));
        assert!(refused(|p| p.version = "1".into()).contains("is not an API version"));
        assert!(refused(|p| p.version = "v1gamma1".into()).contains("is not an API version"));
        assert_eq!(plugin_name("WebSite"), "web-site");
        assert!(is_api_version("v2beta3") && is_api_version("v1") && !is_api_version("v0"));
    }

    #[test]
    fn a_folder_with_files_is_not_written_into() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let files = plan(&project(Language::Python)).unwrap();
        assert!(matches!(write(dir.path(), &files), Err(ScaffoldError::NotEmpty(_))));
        assert!(!dir.path().join("plugin.py").exists());
    }
}
