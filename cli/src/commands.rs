//! One function per subcommand: call the registry, then print a table or JSON.

use std::io::Write;
use std::path::Path;

use mooring_registry::{Error, FetchedModel, ModelRef, ModelVersion, Registry, connect};
use serde_json::json;

use crate::render::{created, list_or_dash, split_params, table, tensors};
use crate::{AliasCommand, Cli, CliError, Command, ModelsCommand, Output};

/// Run one command, writing its result to `out`.
pub async fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let registry = connect(&cli.registry.config())?;
    let reg = registry.as_ref();
    // show/compare fetch artifacts to read signatures; without --cache-dir they go to a
    // temporary directory that is removed when the command ends.
    let tmp;
    let cache: &Path = match &cli.registry.cache_dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path()
        }
    };
    let json = cli.output == Output::Json;
    match &cli.command {
        Command::Models(ModelsCommand::List) => list(reg, json, out).await,
        Command::Models(ModelsCommand::Show {
            name,
            version: None,
        }) => show_model(reg, name, json, out).await,
        Command::Models(ModelsCommand::Show {
            name,
            version: Some(v),
        }) => {
            let (version, fetched) = describe(reg, name, v, cache).await?;
            if json {
                write_json(out, &detail_json(&version, fetched.as_ref()))
            } else {
                write!(
                    out,
                    "{}",
                    table(
                        &["FIELD", "VALUE"],
                        &detail_rows(&[(&version, fetched.as_ref())])
                    )
                )?;
                Ok(())
            }
        }
        Command::Models(ModelsCommand::Compare { name, v1, v2 }) => {
            let (a, fa) = describe(reg, name, v1, cache).await?;
            let (b, fb) = describe(reg, name, v2, cache).await?;
            if json {
                write_json(
                    out,
                    &json!({"name": name, "versions": [detail_json(&a, fa.as_ref()), detail_json(&b, fb.as_ref())]}),
                )
            } else {
                let rows = detail_rows(&[(&a, fa.as_ref()), (&b, fb.as_ref())]);
                let (h1, h2) = (format!("{name}@{v1}"), format!("{name}@{v2}"));
                write!(out, "{}", table(&["FIELD", &h1, &h2], &rows))?;
                Ok(())
            }
        }
        Command::Models(ModelsCommand::Register { name, from }) => {
            let v = reg.register(name, from).await?;
            if json {
                write_json(out, &v)
            } else {
                writeln!(
                    out,
                    "registered {} version {} in {}",
                    v.name,
                    v.version,
                    reg.location()
                )?;
                Ok(())
            }
        }
        Command::Alias(AliasCommand::Set {
            name,
            alias,
            version,
        }) => {
            let before = current_version(reg, name, alias).await?;
            reg.set_alias(name, alias, version).await?;
            if json {
                write_json(
                    out,
                    &json!({"name": name, "alias": alias, "version": version, "previous_version": before}),
                )
            } else {
                let was =
                    before.map_or_else(|| "(new alias)".to_string(), |b| format!("(was {b})"));
                writeln!(out, "{name}@{alias} -> version {version} {was}")?;
                Ok(())
            }
        }
        Command::Alias(AliasCommand::Delete { name, alias }) => {
            let before = current_version(reg, name, alias).await?;
            reg.delete_alias(name, alias).await?;
            if json {
                write_json(
                    out,
                    &json!({"name": name, "alias": alias, "deleted": true, "previous_version": before}),
                )
            } else {
                let was = before.map_or_else(String::new, |b| format!(" (was version {b})"));
                writeln!(out, "deleted alias {name}@{alias}{was}")?;
                Ok(())
            }
        }
    }
}

fn write_json(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// The version an alias points at now, None when the alias does not exist yet.
async fn current_version(
    reg: &dyn Registry,
    name: &str,
    alias: &str,
) -> Result<Option<String>, CliError> {
    match reg.resolve(&ModelRef::alias(name, alias)).await {
        Ok(v) => Ok(Some(v.version)),
        Err(Error::AliasNotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn list(reg: &dyn Registry, json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let models = reg.list_models().await?;
    if json {
        return write_json(out, &models);
    }
    let mut rows = Vec::new();
    for m in &models {
        if m.versions.is_empty() {
            rows.push(vec![
                m.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for v in &m.versions {
            rows.push(version_row(v));
        }
    }
    write!(out, "{}", table(&VERSION_COLUMNS, &rows))?;
    Ok(())
}

/// The columns of [`version_row`].
const VERSION_COLUMNS: [&str; 6] = [
    "MODEL",
    "VERSION",
    "STATUS",
    "ALIASES",
    "CREATED",
    "DESCRIPTION",
];

fn version_row(v: &ModelVersion) -> Vec<String> {
    vec![
        v.name.clone(),
        v.version.clone(),
        v.status.clone(),
        list_or_dash(&v.aliases),
        created(v),
        v.description.clone().unwrap_or_else(|| "-".into()),
    ]
}

async fn show_model(
    reg: &dyn Registry,
    name: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let models = reg.list_models().await?;
    let model =
        models
            .into_iter()
            .find(|m| m.name == name)
            .ok_or_else(|| Error::ModelNotFound {
                name: name.to_string(),
            })?;
    if json {
        return write_json(out, &model);
    }
    let aliases: Vec<String> = model
        .aliases
        .iter()
        .map(|(a, v)| format!("{a} -> {v}"))
        .collect();
    writeln!(out, "model:    {}", model.name)?;
    writeln!(
        out,
        "aliases:  {}",
        list_or_dash(&aliases).replace(',', ", ")
    )?;
    writeln!(out)?;
    let rows: Vec<_> = model.versions.iter().map(version_row).collect();
    write!(out, "{}", table(&VERSION_COLUMNS, &rows))?;
    Ok(())
}

/// Resolve `selector` (a version or an alias) and, when the version is ready, fetch it for
/// its signature and digest.
async fn describe(
    reg: &dyn Registry,
    name: &str,
    selector: &str,
    cache: &Path,
) -> Result<(ModelVersion, Option<FetchedModel>), CliError> {
    let model: ModelRef = format!("{name}@{selector}").parse()?;
    let version = reg.resolve(&model).await?;
    let fetched = if version.is_ready() {
        Some(reg.fetch(&version, cache).await?)
    } else {
        None
    };
    Ok((version, fetched))
}

fn detail_json(v: &ModelVersion, f: Option<&FetchedModel>) -> serde_json::Value {
    json!({
        "version": v,
        "digest": f.map(|f| f.digest.clone()),
        "signature": f.map(|f| &f.signature),
    })
}

/// FIELD, value per version: the rows of `show --version` (one version) and `compare` (two).
fn detail_rows(versions: &[(&ModelVersion, Option<&FetchedModel>)]) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut add = |field: &str, f: &dyn Fn(&ModelVersion, Option<&FetchedModel>) -> String| {
        let mut row = vec![field.to_string()];
        row.extend(versions.iter().map(|(v, fm)| f(v, *fm)));
        rows.push(row);
    };
    let unavailable = |v: &ModelVersion| format!("unavailable (status {})", v.status);
    add("name", &|v, _| v.name.clone());
    add("version", &|v, _| v.version.clone());
    add("status", &|v, _| v.status.clone());
    add("aliases", &|v, _| list_or_dash(&v.aliases));
    add("created", &|v, _| created(v));
    add("description", &|v, _| {
        v.description.clone().unwrap_or_else(|| "-".into())
    });
    add("source", &|v, _| v.source.clone());
    add("run id", &|v, _| {
        v.run_id.clone().unwrap_or_else(|| "-".into())
    });
    add("digest", &|v, f| {
        f.map_or_else(|| unavailable(v), |f| f.digest.clone())
    });
    let mut metric_keys: Vec<&String> = versions
        .iter()
        .flat_map(|(v, _)| v.metrics.keys())
        .collect();
    metric_keys.sort();
    metric_keys.dedup();
    for k in metric_keys {
        add(&format!("metric {k}"), &|v, _| {
            v.metrics
                .get(k)
                .map_or_else(|| "-".into(), |m| m.to_string())
        });
    }
    let split: Vec<_> = versions
        .iter()
        .map(|(v, _)| split_params(&v.tags))
        .collect();
    let mut param_keys: Vec<&str> = split.iter().flat_map(|(p, _)| p.keys().copied()).collect();
    param_keys.sort_unstable();
    param_keys.dedup();
    let mut tag_keys: Vec<&str> = split.iter().flat_map(|(_, t)| t.keys().copied()).collect();
    tag_keys.sort_unstable();
    tag_keys.dedup();
    for (prefix, keys, pick) in [("param", &param_keys, 0usize), ("tag", &tag_keys, 1)] {
        for k in keys.iter() {
            let mut row = vec![format!("{prefix} {k}")];
            for s in &split {
                let map = if pick == 0 { &s.0 } else { &s.1 };
                row.push(map.get(k).map_or("-", |v| v).to_string());
            }
            rows.push(row);
        }
    }
    let mut add = |field: &str, f: &dyn Fn(&FetchedModel) -> String| {
        let mut row = vec![field.to_string()];
        row.extend(
            versions
                .iter()
                .map(|(v, fm)| fm.map_or_else(|| unavailable(v), f)),
        );
        rows.push(row);
    };
    add("inputs", &|f| tensors(&f.signature.inputs));
    add("outputs", &|f| tensors(&f.signature.outputs));
    add("feature names", &|f| {
        list_or_dash(&f.signature.feature_names)
    });
    add("class labels", &|f| list_or_dash(&f.signature.class_labels));
    rows
}

#[cfg(test)]
mod tests;
